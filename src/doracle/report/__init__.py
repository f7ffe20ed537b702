"""The experiment report: summary.md with the metrics table and PNG plots."""
