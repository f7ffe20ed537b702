"""The adversarial-training game's evaluation job: the model to evaluate (the DO mixture, its best
member, the uniform mixture over the final population, or a baseline's checkpoint) loaded and run
through the evaluation suite (:func:`doracle.evaluation.suite.run_suite`), its result written as the
job's evaluation file. Resumable through the suite's state file."""

from __future__ import annotations

import hashlib
import json
import time

from doracle import artifacts, runtime
from doracle.artifacts import timing_of, write_json
from doracle.config import Params
from doracle.data import load as load_dataset
from doracle.evaluation.suite import State, Target, run_suite, threat_model_record
from doracle.games import GAMES, classifiers
from doracle.games.at.jobs import load_strategy
from doracle.games.graph import stage_params
from doracle.games.population import best_member, read_population
from doracle.models.mixture import Mixture


def do_target(label: str, population_path: str, device: str) -> Target:
    """The DO mixture, its best single member, or the uniform mixture over the final population."""
    state, doc = read_population(population_path)
    if label == "do_mixture":
        chosen = [(i, p) for i, p in zip(state.row_ids, state.sigma_row, strict=True) if p > 1e-9]
        info = {"selected_by": "the DO meta-strategy (sigma_row)"}
    elif label == "do_uniform":
        chosen = [(i, 1.0 / len(state.row_ids)) for i in state.row_ids]
        info = {"selected_by": "uniform over the final defender population"}
    elif label == "do_best_member":
        chosen = [(best_member(state), 1.0)]
        info = {"selected_by": "max over defenders of the min payoff over attackers (payoff split)"}
    else:
        raise ValueError(f"unknown DO evaluation target {label!r}; valid: {', '.join(GAMES.get('at').TARGETS)}")
    ids = [i for i, _ in chosen]
    models = [load_strategy(doc, i, device) for i in ids]
    shas = [doc["strategies"][i]["sha256"] for i in ids]
    return Target(label, Mixture(models, [p for _, p in chosen]), ids, shas, info)


def checkpoint_target(label: str, path: str, device: str, data: dict | None = None) -> Target:
    model, meta = classifiers.load(path, device, data)
    info = {"defense": meta.get("defense"), "train_seconds": timing_of(meta, "training", "train_seconds")}
    return Target(label, Mixture([model]), [label], [meta["sha256"]], info)


def evaluate(params: Params, data_path: str, label: str, out: str, *, population: str | None = None,
             checkpoint: str | None = None, state_path: str | None = None, log=print) -> dict:
    seed = runtime.derive_seed(params.seed, "evaluate")
    device = runtime.setup(seed, params.device, params.threads)
    ds = load_dataset(data_path, device)
    n = len(ds.y["test"]) if params.evaluation.max_examples is None else min(params.evaluation.max_examples,
                                                                             len(ds.y["test"]))
    x, y = ds.x["test"][:n], ds.y["test"][:n]
    if population is not None:
        target = do_target(label, population, device)
        source = population
    elif checkpoint is not None:
        target = checkpoint_target(label, checkpoint, device, ds.meta)
        source = checkpoint
    else:
        raise ValueError("evaluate needs a population or a checkpoint")
    tm_record = threat_model_record(params, n, seed)
    fp = hashlib.sha256(json.dumps({"label": label, "members": target.shas, "probs": target.probs,
                                    "data": ds.meta["sha256"], "threat_model": tm_record},
                                   sort_keys=True).encode()).hexdigest()
    state = State(state_path, fp, log)
    t0 = time.perf_counter()
    suite = run_suite(params, target, x, y, seed=seed, device=device, state=state, log=log)
    result = {
        "kind": "evaluation", "experiment": params.experiment, "label": label, "seed": seed,
        "params": stage_params(params, "evaluate"),
        "threat_model": tm_record, **{k: suite[k] for k in ("clean_accuracy", "robust_accuracy",
                                                            "robust_accuracy_curve", "diagnostics", "worst_case_per_example")},
        "members": target.ids, "probs": target.probs, **target.info,
        "checks": suite["checks"], "eval_seconds": round(time.perf_counter() - t0, 3),
        "inputs": artifacts.inputs_record((data_path, source)),
    }
    write_json(out, result)
    state.done()
    return result
