"""The adversarial-training (AT) game, as pipeline steps on artifacts.

* Defender (row player, maximises): a classifier. Its best response trains a classifier with a
  registered defense against perturbations drawn from the attacker meta-strategy (weight
  ``do.defender.opponent_weight``) plus the defense's own white-box attack.
* Attacker (column player): a deterministic perturbation function delta_j(x), ||delta|| <= eps: an
  attack spec *bound to the defender mixture it was computed against*. Its best response runs the
  attack on the expected loss of the current defender mixture. Because delta_j depends only on x,
  it is evaluated once on the training and payoff splits and cached in the attacker artifact.
* Payoff U[i, j] = accuracy of classifier i on the payoff split perturbed by delta_j, with its
  sample count and standard error.

Each function below is one pipeline job; the CLI wraps them, Snakemake and DVC schedule them.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from doracle import artifacts, compute, runtime
from doracle.artifacts import sha256_file, write_json
from doracle.compute import PassCounter
from doracle.config import Params
from doracle.data import Dataset
from doracle.data import load as load_dataset
from doracle.engine import DOState, cells_to_evaluate, extend_payoff
from doracle.games import classifiers
from doracle.games.attackers import AttackerStrategy, ModelCache, Opponent, target_refs
from doracle.games.population import _population_doc, _strategy, best_member, read_population
from doracle.models.mixture import Mixture
from doracle.pipeline import stage_params


def _data_ref(ds: Dataset) -> dict:
    keep = ("dataset", "shape", "num_classes", "mean", "std", "split_indices_sha256")
    return {k: ds.meta[k] for k in keep}


# ----------------------------------------------------------------------------- classifiers


def _train_and_save(params: Params, ds: Dataset, out: str, *, defense: str, epochs: int, seed: int, device: str,
                    inputs: list[str], stage_keys: dict, desc: str, **extra) -> dict:
    """Train a fresh classifier with ``defense`` (``extra`` may carry the DO opponent term), save it
    with its metadata, return the metadata."""
    from doracle.defenses import make_defense, resume
    from doracle.defenses.training import accuracy, place_training_split, train

    opponent = extra.pop("opponent", None)
    model = classifiers.new_classifier(params.model.arch, ds, device)
    init = extra.pop("init", None)
    if init is not None:  # warm start: the architecture is the same, the weights a member's
        model.load_state_dict(init.state_dict())
    kwargs = {}
    if opponent is not None:
        kwargs = {"opponent": opponent["opponent"], "opponent_weight": opponent["weight"]}
        extra["opponent"] = {k: opponent[k] for k in ("ids", "probs", "weight", "materialized")}
    # a resumable state is only resumed by the same job: same params, seed, inputs and opponents
    fingerprint = artifacts.digest({"params": stage_keys, "seed": seed, "defense": defense, "epochs": epochs,
                                    "inputs": {p: sha256_file(p) for p in inputs},
                                    **{k: v for k, v in extra.items() if k != "init"}})
    ckpt = resume.checkpoint_path(out)
    x_train, placement = place_training_split(ds.x["train"], device, params.training.data_placement)
    y_train = ds.y["train"].to(x_train.device)
    stats = train(model, make_defense(defense, params), x_train, y_train, params.training,
                  epochs=epochs, seed=seed, desc=desc, checkpoint=ckpt, fingerprint=fingerprint,
                  augmentation=params.augmentation, **kwargs)
    stats["data_placement"] = placement
    stats["train_accuracy"] = accuracy(model, x_train, y_train)
    meta = artifacts.metadata("classifier", params=stage_keys, seed=seed, inputs=inputs, defense=defense,
                              arch=params.model.arch, data=_data_ref(ds), training=stats, device=device,
                              compute=stats["compute"], **extra)
    classifiers.save(out, model, meta)
    resume.remove(ckpt)
    return meta


def train_classifier(params: Params, data_path: str, out: str, *, role: str, method: str) -> dict:
    """Train the base model (``role='base'``) or a baseline (``role='baseline'``) with ``method``."""
    seed = runtime.derive_seed(params.seed, role, method)
    device = runtime.setup(seed, params.device, params.threads)
    ds = load_dataset(data_path, device, train_device="cpu")  # placed by _train_and_save
    cfg = params.base if role == "base" else params.baselines
    return _train_and_save(params, ds, out, defense=method, epochs=cfg.epochs or params.training.epochs, seed=seed,
                           device=device, inputs=[data_path], stage_keys=stage_params(params, "train", role),
                           desc=f"{role} {method}", role=role)


# ----------------------------------------------------------------------------- population state


def _checked_ref(doc: dict, sid: str) -> dict:
    ref = doc["strategies"][sid]
    artifacts.check_sha256(ref["path"], ref["sha256"], f"since the population recorded it (strategy {sid})")
    return ref


def _load_strategy(doc: dict, sid: str, device: str):
    """A defender's classifier, or an attacker's tensors (cached perturbations)."""
    ref = _checked_ref(doc, sid)
    if ref["player"] == "defender":
        return classifiers.load(ref["path"], device)[0]
    return _load_attacker(doc, sid, device)[0]


def _load_attacker(doc: dict, sid: str, device: str) -> tuple[dict, dict]:
    """An attacker's (tensors, metadata)."""
    return artifacts.load_tensors(_checked_ref(doc, sid)["path"], device)


def _mixture(doc: dict, ids: list[str], probs, device: str) -> tuple[Mixture, list[str]]:
    keep = [(i, p) for i, p in zip(ids, probs, strict=True) if p > 1e-9]
    return Mixture([_load_strategy(doc, i, device) for i, _ in keep], [p for _, p in keep]), [i for i, _ in keep]


def _craft_attacker(params: Params, ds: Dataset, mixture: Mixture, target: dict, seed: int) -> tuple[dict, dict]:
    """The attacker strategy against ``mixture``: its perturbations of the payoff split, and of the
    training split when it is cached (:func:`doracle.games.attackers.materialize`). ``target``
    holds the ids, probabilities and artifact refs of the mixture's members."""
    from doracle.attacks import run_attack
    from doracle.games.attackers import materialize

    spec = params.do.attacker.attack
    tm = params.threat_model
    mode, why = materialize(params, len(ds.y["train"]), ds.shape)
    splits = ("train", "payoff") if mode == "cache" else ("payoff",)
    seeds = {split: runtime.derive_seed(seed, split) for split in ("train", "payoff")}
    out = {}
    with PassCounter(mixture.models) as counter:
        for split in splits:
            keys = torch.arange(len(ds.y[split]))
            out[f"x_{split}"] = run_attack(spec, mixture, ds.x[split], ds.y[split], eps=tm.eps_value, norm=tm.norm,
                                           seed=seeds[split], keys=keys)
    delta = (out["x_payoff"] - ds.x["payoff"]).flatten(1)
    norms = delta.abs().amax(1) if tm.norm == "linf" else delta.norm(dim=1)
    info = {
        "attack": spec.model_dump(), "threat_model": {"norm": tm.norm, "eps": tm.eps, "eps_value": tm.eps_value},
        "target": target, "seeds": seeds, "materialize": {"train": mode, "why": why},
        "max_perturbation": float(norms.max()), "nan_count": int(torch.isnan(out["x_payoff"]).sum()),
        "target_expected_accuracy_payoff": float(mixture.expected_accuracy(out["x_payoff"], ds.y["payoff"]).mean()),
        "compute": counter.to_json(),
    }
    return out, info


def _cell(model, x_adv, y) -> tuple[float, float, dict]:
    """(accuracy, its standard error, the compute it took) of one payoff cell."""
    from doracle.defenses.training import accuracy

    with PassCounter([model]) as counter:
        acc = accuracy(model, x_adv, y)
    return acc, math.sqrt(max(acc * (1 - acc), 0.0) / len(y)), counter.to_json()


def init(params: Params, data_path: str, base_path: str, attacker_out: str, out: str) -> dict:
    """Iteration 0: the base classifier, the attack against it, and their 1x1 payoff."""
    seed = runtime.derive_seed(params.seed, "init")
    device = runtime.setup(seed, params.device, params.threads)
    ds = load_dataset(data_path, device)
    base, _ = classifiers.load(base_path, device)
    base_ref = _strategy(base_path, "defender")
    target = {"ids": ["d000"], "probs": [1.0], "refs": {"d000": base_ref}}
    tensors, info = _craft_attacker(params, ds, Mixture([base]), target, seed)
    artifacts.save_tensors(attacker_out, tensors, artifacts.metadata(
        "attacker", params=stage_params(params, "init"), seed=seed, inputs=[data_path, base_path], **info))
    u, se, cost = _cell(base, tensors["x_payoff"], ds.y["payoff"])
    state = DOState(["d000"], ["a000"], np.array([[u]]), np.ones(1), np.ones(1), u)
    doc = _population_doc(params, state, np.array([[se]]), len(ds.y["payoff"]), {
        "d000": base_ref, "a000": _strategy(attacker_out, "attacker")}, seed)
    doc["compute"] = cost  # the attack's own compute is in the attacker's sidecar
    write_json(out, doc)
    return doc


def _skip(out: str, reason: str, params: Params, stage: str) -> None:
    artifacts.save_tensors(out, {}, artifacts.metadata("skipped", params=stage_params(params, stage), seed=None,
                                                       skipped=True, reason=reason))


# ----------------------------------------------------------------------------- best responses


def _best_response_setup(params: Params, data_path: str, state_path: str, iteration: int, out: str, stage: str):
    """(state, doc, seed, device, dataset), or None after writing a pass-through once converged."""
    state, doc = read_population(state_path)
    if state.converged:
        _skip(out, f"converged at iteration {state.iteration}", params, stage)
        return None
    seed = runtime.derive_seed(params.seed, stage, iteration)
    device = runtime.setup(seed, params.device, params.threads)
    return state, doc, seed, device, load_dataset(data_path, device, train_device="cpu")


def best_response_defender(params: Params, data_path: str, state_path: str, iteration: int, out: str) -> dict:
    ctx = _best_response_setup(params, data_path, state_path, iteration, out, "best_response_defender")
    if ctx is None:
        return {"skipped": True}
    state, doc, seed, device, ds = ctx
    ids = [c for c, p in zip(state.col_ids, state.sigma_col, strict=True) if p > 1e-9]
    probs = [float(p) for p in state.sigma_col if p > 1e-9]
    cfg = params.do.defender
    models = ModelCache(device)
    strategies = [AttackerStrategy(c, *_load_attacker(doc, c, "cpu"), models) for c in ids]
    opponent = {"ids": ids, "probs": probs, "weight": cfg.opponent_weight, "opponent": Opponent(strategies, probs),
                "materialized": {s.sid: "cache" if s.cached is not None else "on_the_fly" for s in strategies}}
    warm = {}
    if cfg.warm_start:
        start = best_member(state)
        warm = {"init": _load_strategy(doc, start, device), "warm_start_from": start}
    return _train_and_save(params, ds, out, defense=cfg.defense, epochs=cfg.epochs or params.training.epochs,
                           seed=seed, device=device, inputs=[data_path, state_path],
                           stage_keys=stage_params(params, "best_response_defender"),
                           desc=f"it{iteration:03d} defender", role="do_defender", iteration=iteration,
                           opponent=opponent, **warm)


def best_response_attacker(params: Params, data_path: str, state_path: str, iteration: int, out: str) -> dict:
    ctx = _best_response_setup(params, data_path, state_path, iteration, out, "best_response_attacker")
    if ctx is None:
        return {"skipped": True}
    state, doc, seed, device, ds = ctx
    mixture, ids = _mixture(doc, state.row_ids, state.sigma_row, device)
    t0 = time.perf_counter()
    target = {"ids": ids, "probs": mixture.probs, "refs": target_refs(doc, ids)}
    tensors, info = _craft_attacker(params, ds, mixture, target, seed)
    info["attack_seconds"] = time.perf_counter() - t0
    meta = artifacts.metadata("attacker", params=stage_params(params, "best_response_attacker"), seed=seed,
                              inputs=[data_path, state_path], iteration=iteration, **info)
    artifacts.save_tensors(out, tensors, meta)
    return meta


# ----------------------------------------------------------------------------- payoff, solve, prune


def payoff(params: Params, data_path: str, state_path: str, iteration: int, defender: str, attacker: str,
           out: str) -> dict:
    """Extend the payoff matrix by the new row and column only; known cells are reused."""
    state, doc = read_population(state_path)
    new_row, new_col = f"d{iteration:03d}", f"a{iteration:03d}"
    base = {"kind": "payoff", "iteration": iteration, "params": stage_params(params, "payoff")}
    if state.converged:
        write_json(out, {**base, "skipped": True, "row_ids": state.row_ids, "col_ids": state.col_ids,
                         "payoff": state.payoff.tolist(), "stderr": doc["payoff_stderr"], "n": doc["payoff_n"],
                         "cells_evaluated": 0, "strategies": doc["all_strategies"]})
        return {"skipped": True}
    device = runtime.setup(0, params.device, params.threads)
    ds = load_dataset(data_path, device)
    strategies = dict(doc["all_strategies"])
    strategies[new_row] = _strategy(defender, "defender", iteration=iteration)
    strategies[new_col] = _strategy(attacker, "attacker", iteration=iteration)
    doc = {**doc, "strategies": strategies}
    cells = cells_to_evaluate(state.row_ids, state.col_ids, new_row, new_col)
    y = ds.y["payoff"]
    models, advs, values, errs, costs = {}, {}, {}, {}, []
    for r, c in cells:
        if r not in models:
            models[r] = _load_strategy(doc, r, device)
        if c not in advs:
            advs[c] = _load_strategy(doc, c, device)["x_payoff"]
        values[(r, c)], errs[(r, c)], cost = _cell(models[r], advs[c], y)
        costs.append(cost)
    rows, cols, a = extend_payoff(state, new_row, new_col, values)
    se_state = DOState(state.row_ids, state.col_ids, np.asarray(doc["payoff_stderr"]), state.sigma_row,
                       state.sigma_col, state.value)
    _, _, se = extend_payoff(se_state, new_row, new_col, errs)
    result = {**base, "skipped": False, "row_ids": rows, "col_ids": cols, "payoff": a.tolist(),
              "stderr": se.tolist(), "n": int(len(y)), "cells_evaluated": len(cells),
              "new_row": new_row, "new_col": new_col, "strategies": strategies, "compute": compute.add(*costs),
              "inputs": {p: sha256_file(p) for p in (data_path, state_path, defender, attacker)}}
    write_json(out, result)
    return result
