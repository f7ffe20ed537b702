"""Robustness evaluation of single classifiers and mixtures (exact expectation over members)."""
