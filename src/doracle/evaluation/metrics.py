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
    models, tms = {}, []
    for path in evaluations:
        e = read_json(path)
        if e.get("kind") != "evaluation":
            raise ValueError(f"{path}: not an evaluation file")
        tms.append(e["threat_model"])
        models[e["label"]] = {**{k: v for k, v in e.items()
                                 if k not in ("kind", "experiment", "label", "threat_model", "params", "inputs",
                                              "timing", "provenance", artifacts.SEAL)},
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
    metrics = {
        "kind": "metrics", "experiment": params.experiment, "seed": params.seed,
        "params": stage_params(params, "evaluate"), "threat_model": tms[0] if tms else None,
        "models": models,
        "double_oracle": double_oracle_summary(state, params.do.tolerance),
        "warnings": [f"{label}: {w}" for label, m in models.items() for w in m["checks"]["warnings"]],
        "inputs": artifacts.inputs_record([population_path, *evaluations]),
    }
    write_json(out, metrics)
    return metrics
