"""Optuna sweeps over the real pipeline (``doracle sweep SPACE.yaml``; docs/sweeps.md).

space.py: the space file (schema, checks against the base params, metric and direction);
runner.py: the study (storage, sampler, pruner), the workers' loop and one trial (Snakemake one DO
iteration at a time, pruning, resume of dead workers' trials); report.py: summary.md, plots,
best.json.
"""

from doracle.sweep.space import SweepSpec, load_space

__all__ = ["SweepSpec", "load_space"]
