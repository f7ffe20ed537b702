"""The experiment report: index.html (self-contained, for browsers), summary.md (terminals), PNG plots,
methods.csv and plots/*.json (Snakemake's and DVC's reports)."""
