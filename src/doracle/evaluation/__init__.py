"""Honest robustness evaluation of single classifiers and mixtures (see suite.py)."""
