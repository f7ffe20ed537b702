"""metrics.json of an adversarial-training experiment, merged from its evaluation files.

Torch-free: the metrics job reads JSON only and starts in well under a second.
"""

from __future__ import annotations

from doracle import artifacts
from doracle.artifacts import read_json, write_json
from doracle.config import Params
from doracle.pipeline import stage_params


def merge_metrics(params: Params, population_path: str, evaluations: list[str], out: str,
                  targets: tuple[str, ...] = ("do_mixture", "do_best_member", "do_uniform")) -> dict:
    """metrics.json: every evaluated model, the threat model, the double-oracle summary. ``targets``:
    the game's DO evaluation targets (AdversarialTraining.TARGETS), whose compute is the whole DO run."""
    from doracle.games.population import double_oracle_summary, read_population

    state, doc = read_population(population_path)
    models, tms, per_example = {}, [], {}
    for path in evaluations:
        e = read_json(path)
        if e.get("kind") != "evaluation":
            raise ValueError(f"{path}: not an evaluation file")
        per_example[e["label"]] = e.get("worst_case_per_example")
        tms.append(e["threat_model"])
        models[e["label"]] = {**{k: v for k, v in e.items()
                                 if k not in ("kind", "experiment", "label", "threat_model", "params", "inputs",
                                              "timing", "provenance", "worst_case_per_example", artifacts.SEAL)},
                              **(e.get("timing") or {})}  # durations: back into metrics.json's timing block
    if any(t != tms[0] for t in tms):
        raise ValueError("the evaluations were run under different threat models")
    # every model's total compute: all the jobs that produced it (the whole DO run for DO targets)
    from doracle.compute import model_cost
    from doracle.pipeline import PATTERNS

    for label, r in models.items():
        produced_by = population_path if label in targets else \
            PATTERNS["baseline"].format(exp=params.experiment, method=label)
        r["compute"] = model_cost(params, produced_by)
        if label in params.baselines.matched_names():  # the DO run's budget it copied (its sidecar)
            r["budget"] = read_json(artifacts.sidecar(produced_by))["budget"]
    metrics = {
        "kind": "metrics", "experiment": params.experiment, "seed": params.seed,
        "params": stage_params(params, "evaluate"), "threat_model": tms[0] if tms else None,
        "models": models,
        "comparisons": worst_case_comparisons(per_example, seed=params.seed),
        "transfer": transfer(state, doc),
        "double_oracle": double_oracle_summary(state, params.do.tolerance, doc["payoff_stderr"], params.seed),
        "warnings": [f"{label}: {w}" for label, m in models.items() for w in m["checks"]["warnings"]],
        "inputs": artifacts.inputs_record([population_path, *evaluations]),
    }
    write_json(out, metrics)
    return metrics


def worst_case_comparisons(per_example: dict, *, seed: int, model: str = "do_mixture") -> dict:
    """``model``'s worst-case robust accuracy minus every other model's, as paired differences over
    the same test examples with bootstrap 95 % intervals (:func:`doracle.evaluation.intervals.paired_mean_difference`).
    Empty when ``model`` was not evaluated; a model without per-example scores is left out."""
    from doracle.evaluation.intervals import paired_mean_difference

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
    import numpy as np

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
