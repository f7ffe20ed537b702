"""Bootstrap intervals (torch-free: the metrics jobs use them).

A statistic such as FID is computed on the full samples (the point estimate) and on ``B`` bootstrap
resamples of them. Resampling with replacement duplicates examples, which biases FID upwards
(a Gaussian fitted to duplicated features is narrower), so the resampled values can all lie above
the point estimate and a plain percentile interval would miss it. The interval here keeps the
bootstrap distribution's spread and moves its centre to the point estimate:

    [point + q(alpha/2) - median, point + q(1 - alpha/2) - median]      (q: the replicates' quantiles)

It covers the point estimate by construction and narrows as the samples grow (the spread shrinks).

A **paired** comparison of two models scored on the same real images and the same latents uses
the same resample indices for both (every evaluation job draws them from the same seed), so the
replicate differences ``a_b - b_b`` carry what the two share out; a model against itself gives
differences of exactly 0 and the interval [0, 0].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

LEVEL = 0.95


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (linear interpolation between order statistics, numpy's default)."""
    if not values:
        raise ValueError("quantile of no values")
    s = sorted(values)
    pos = q * (len(s) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def centered_interval(point: float, replicates: Sequence[float], level: float = LEVEL) -> list[float] | None:
    """The bootstrap interval of ``point`` (module docstring); None without replicates."""
    if not replicates:
        return None
    alpha = 1 - level
    mid = quantile(replicates, 0.5)
    return [point + quantile(replicates, alpha / 2) - mid, point + quantile(replicates, 1 - alpha / 2) - mid]


def paired_difference(point_a: float, reps_a: Sequence[float], point_b: float, reps_b: Sequence[float],
                      level: float = LEVEL) -> dict:
    """``a - b`` with its paired bootstrap interval (the replicates were drawn with the same
    indices for both), and a verdict: ``lower`` / ``higher`` when the interval excludes 0."""
    if len(reps_a) != len(reps_b):
        raise ValueError(f"paired replicates differ in number ({len(reps_a)} vs {len(reps_b)})")
    diff = point_a - point_b
    interval = centered_interval(diff, [a - b for a, b in zip(reps_a, reps_b, strict=True)], level)
    verdict = ("no interval" if interval is None else "lower" if interval[1] < 0 else
               "higher" if interval[0] > 0 else "not distinguishable")
    return {"difference": diff, "interval": interval, "level": level, "verdict": verdict,
            "resamples": len(reps_a)}


def paired_mean_difference(a: Sequence[float], b: Sequence[float], *, seed: int, resamples: int = 2000,
                           level: float = LEVEL) -> dict:
    """``mean(a) - mean(b)`` of two models scored on the same examples (``a[i]``, ``b[i]``: example
    ``i``'s score under each), with the percentile interval of the example-resampled differences
    (the same resample indices for both; seeded) and a verdict: ``lower`` / ``higher`` when the
    interval excludes 0."""

    a_, b_ = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a_.shape != b_.shape or a_.ndim != 1 or not len(a_):
        raise ValueError(f"paired scores must be two equally long lists of examples, got {a_.shape} and {b_.shape}")
    d = a_ - b_
    idx = np.random.default_rng(seed).integers(0, len(d), size=(resamples, len(d)))
    reps = d[idx].mean(1)
    alpha = 1 - level
    interval = [float(np.quantile(reps, alpha / 2)), float(np.quantile(reps, 1 - alpha / 2))]
    verdict = "lower" if interval[1] < 0 else "higher" if interval[0] > 0 else "not distinguishable"
    return {"difference": float(d.mean()), "interval": interval, "level": level, "verdict": verdict,
            "resamples": resamples, "examples": len(d)}
