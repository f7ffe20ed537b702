"""The adversarial-training game's metrics job: metrics.json merged from the evaluation files, with
every model's compute (the jobs upstream of it), the paired worst-case comparisons, the attackers'
transfer and the double-oracle summary. Torch-free: it reads JSON only."""

from __future__ import annotations

from doracle import artifacts
from doracle.artifacts import read_json, write_json
from doracle.config import Params
from doracle.evaluation.metrics import transfer, worst_case_comparisons
from doracle.games.graph import model_cost, stage_params
from doracle.games.population import double_oracle_summary, read_population
from doracle.paths import PATTERNS


def merge_metrics(params: Params, population_path: str, evaluations: list[str], out: str,
                  targets: tuple[str, ...] = ("do_mixture", "do_best_member", "do_uniform")) -> dict:
    """metrics.json: every evaluated model, the threat model, the double-oracle summary. ``targets``:
    the game's DO evaluation targets (AdversarialTraining.TARGETS), whose compute is the whole DO run."""
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
