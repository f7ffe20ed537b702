"""Evaluate every model of an experiment under the attack suite of ``params.evaluation``.

For a mixture (members f_i, probabilities p_i) every number is the exact expectation
sum_i p_i 1[f_i(x + delta) = y], never one sampled draw. Attacks run on the mixture's expected
loss; for mixtures of several members each attack also runs on every member separately
(``<attack>_per_member``: the per-example worst over members). ``worst_case`` is the
per-example minimum over everything run.
"""

from __future__ import annotations

import time

import torch
from tqdm.auto import tqdm

from doracle import artifacts, runtime
from doracle.artifacts import read_json, write_json
from doracle.attacks import run_attack
from doracle.config import Params
from doracle.data import load as load_dataset
from doracle.games import classifiers
from doracle.games.adversarial import _load_strategy
from doracle.games.population import read_population
from doracle.models.mixture import Mixture
from doracle.pipeline import stage_params


def evaluate_mixture(params: Params, mixture: Mixture, x, y, seed: int, label: str) -> dict:
    tm = params.threat_model
    clean = mixture.expected_accuracy(x, y)
    per_example = {}
    for name, spec in params.evaluation.attacks.items():
        s = runtime.derive_seed(seed, name)
        xa = run_attack(spec, mixture, x, y, eps=tm.eps_value, norm=tm.norm, seed=s)
        per_example[name] = mixture.expected_accuracy(xa, y)
        if len(mixture.models) > 1:
            worst = torch.ones_like(clean)
            for k, m in enumerate(mixture.models):
                xm = run_attack(spec, Mixture([m]), x, y, eps=tm.eps_value, norm=tm.norm,
                                seed=runtime.derive_seed(s, "member", k))
                worst = torch.minimum(worst, mixture.expected_accuracy(xm, y))
            per_example[f"{name}_per_member"] = worst
    worst = torch.stack([clean, *per_example.values()]).amin(0)
    robust = {k: float(v.mean()) for k, v in per_example.items()}
    robust["worst_case"] = float(worst.mean())
    return {"clean_accuracy": float(clean.mean()), "robust_accuracy": robust}


def evaluate(params: Params, data_path: str, population_path: str, baselines: dict[str, str], out: str) -> dict:
    seed = runtime.derive_seed(params.seed, "evaluate")
    device = runtime.setup(seed, params.device, params.threads)
    ds = load_dataset(data_path, device)
    n = len(ds.y["test"]) if params.evaluation.max_examples is None else min(params.evaluation.max_examples,
                                                                             len(ds.y["test"]))
    x, y = ds.x["test"][:n], ds.y["test"][:n]
    state, doc = read_population(population_path)
    members = [(i, p) for i, p in zip(state.row_ids, state.sigma_row, strict=True) if p > 1e-9]
    nets = {i: _load_strategy(doc, i, device) for i, _ in members}
    # Best single member: highest worst-case payoff over the attacker population (payoff split,
    # not the test split), ties broken by meta-probability.
    worst_payoff = state.payoff.min(axis=1)
    best_idx = max(range(len(state.row_ids)), key=lambda k: (worst_payoff[k], state.sigma_row[k]))
    best_id = state.row_ids[best_idx]
    if best_id not in nets:
        nets[best_id] = _load_strategy(doc, best_id, device)

    jobs = {
        "do_mixture": (Mixture([nets[i] for i, _ in members], [p for _, p in members]),
                       {"members": [i for i, _ in members], "probs": [float(p) for _, p in members]}),
        "do_best_member": (Mixture([nets[best_id]]), {"id": best_id,
                                                      "selected_by": "max over defenders of min payoff (payoff split)"}),
    }
    for name, path in baselines.items():
        model, meta = classifiers.load(path, device)
        jobs[name] = (Mixture([model]), {"train_seconds": meta["training"]["train_seconds"],
                                         "defense": meta["defense"]})
    results = {}
    for label, (mix, extra) in tqdm(jobs.items(), desc="evaluate", unit="model"):
        t0 = time.perf_counter()
        results[label] = {**evaluate_mixture(params, mix, x, y, seed, label), **extra,
                          "eval_seconds": round(time.perf_counter() - t0, 3)}
    hist = state.history
    tm = params.threat_model
    metrics = {
        "kind": "metrics", "experiment": params.experiment, "seed": seed,
        "params": stage_params(params, "evaluate"),
        "threat_model": {"norm": tm.norm, "eps": tm.eps, "eps_value": tm.eps_value,
                         "attacks": {k: v.model_dump() for k, v in params.evaluation.attacks.items()},
                         "n_examples": n, "split": "test", "seed": seed},
        "models": results,
        "double_oracle": {
            "iterations_run": len(hist), "converged": bool(state.converged),
            "final_gap": float(hist[-1]["gap"]) if hist else None,
            "support_size": len(members), "value": float(state.value),
            "gap_history": [float(h["gap"]) for h in hist],
            "tolerance": params.do.tolerance,
        },
        "inputs": {p: artifacts.sha256_file(p) for p in [data_path, population_path, *baselines.values()]},
    }
    write_json(out, metrics)
    return metrics


def load_metrics(path: str) -> dict:
    m = read_json(path)
    if m.get("kind") != "metrics":
        raise ValueError(f"{path}: not a metrics file")
    return m

