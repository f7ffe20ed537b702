"""What metrics.json derives from evaluation files and the payoff matrix: the paired worst-case
comparisons between models and the attackers' transfer. The adversarial-training game's metrics
job (:func:`doracle.games.at.game.merge_metrics`) writes them.

Torch-free: the metrics job reads JSON only and starts in well under a second.
"""

from __future__ import annotations

import numpy as np

from doracle import artifacts
from doracle.artifacts import read_json
from doracle.evaluation.intervals import paired_mean_difference


def worst_case_comparisons(per_example: dict, *, seed: int, model: str = "do_mixture") -> dict:
    """``model``'s worst-case robust accuracy minus every other model's, as paired differences over
    the same test examples with bootstrap 95 % intervals (:func:`doracle.evaluation.intervals.paired_mean_difference`).
    Empty when ``model`` was not evaluated; a model without per-example scores is left out."""

    if not per_example.get(model):
        return {}
    return {f"{model} - {other}": {"metric": "worst_case", **paired_mean_difference(
                per_example[model], scores, seed=seed)}
            for other, scores in per_example.items()
            if other != model and scores and len(scores) == len(per_example[model])}


def transfer(state, doc: dict) -> dict:
    """Per attacker column of the payoff matrix: the mean accuracy of the defenders it was computed
    against (its sidecar's target) and of the others, and the transfer ratio, the others' error
    over the targets' (1: the perturbations fool the others as much; 0: not at all). Members too
    alike for a mixture to help show ratios near 1. Columns without both kinds of rows are left out."""

    a = np.asarray(state.payoff, dtype=float)
    out = {}
    for j, sid in enumerate(state.col_ids):
        target = set(read_json(artifacts.sidecar(doc["strategies"][sid]["path"])).get("target", {}).get("ids", []))
        on = [i for i, r in enumerate(state.row_ids) if r in target]
        off = [i for i, r in enumerate(state.row_ids) if r not in target]
        if not on or not off:
            continue
        acc_on, acc_off = float(a[on, j].mean()), float(a[off, j].mean())
        out[sid] = {"targets": [state.row_ids[i] for i in on], "accuracy_targets": acc_on,
                    "accuracy_others": acc_off,
                    "transfer_ratio": (1 - acc_off) / (1 - acc_on) if acc_on < 1 else None}
    return out
