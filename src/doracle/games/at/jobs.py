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
from doracle.artifacts import read_json, sidecar, write_json
from doracle.attacks import run_attack
from doracle.compute import PassCounter
from doracle.config import Params
from doracle.data import Dataset
from doracle.data import load as load_dataset
from doracle.defenses import make_defense
from doracle.defenses.training import accuracy, train
from doracle.engine import DOState
from doracle.games import classifiers, game_of, graph, nas
from doracle.games.at.attackers import (
    AttackerStrategy,
    ModelCache,
    Opponent,
    materialize,
    target_refs,
)
from doracle.games.graph import stage_params
from doracle.games.population import (
    _population_doc,
    _strategy,
    best_member,
    checked_ref,
    close_job,
    payoff_job,
    read_population,
    skip_artifact,
)
from doracle.models.mixture import Mixture

# ----------------------------------------------------------------------------- classifiers


def train_classifier(params: Params, data_path: str, out: str, *, role: str, method: str) -> dict:
    """Train the base model (``role='base'``) or a baseline (``role='baseline'``) with ``method``."""
    seed = runtime.derive_seed(params.seed, role, method)
    device = runtime.setup(seed, params.device, params.threads)
    ds = load_dataset(data_path, device, train_device="cpu")  # placed by classifiers.train_and_save
    cfg = params.base if role == "base" else params.baselines
    return classifiers.train_and_save(params, ds, out, arch=params.model.arch, defense=method, epochs=cfg.epochs or params.training.epochs, seed=seed,
                           device=device, inputs=[data_path], stage_keys=stage_params(params, "train", role),
                           desc=f"{role} {method}", role=role)


def do_budget(params: Params, population: str) -> dict:
    """The closed DO run's budget, from its jobs' own records (every job upstream of ``population``):
    the epochs its defenders trained in total (the base model, every defender best response, and
    DONAS candidates' short epochs) and its counted forward + backward passes
    (:func:`doracle.games.graph.model_cost`, the closing step included)."""

    epochs = 0
    for job in graph.lineage(params, population):
        trains = job["rule"] == "train" or (job["rule"] == "best_response"
                                            and job["wildcards"].get("player") == "defender")
        if not trains:
            continue
        meta = read_json(sidecar(job["outputs"]["model"]))
        if meta.get("skipped"):
            continue
        epochs += int(meta["training"]["epochs"])
        found = meta.get("nas") or {}
        epochs += sum(int(c.get("epochs", 0)) for c in found.get("candidates", []))
    return {"defender_epochs": epochs, "passes": graph.model_cost(params, population)["passes"]}


def passes_per_example(params: Params, ds: Dataset, defense: str, device: str, seed: int) -> float:
    """The passes one training example costs with ``defense``, counted on one batch of a throw-away
    copy of a fresh classifier by the training loop itself (every attack step, closure call and
    extra network the defense runs)."""

    b = min(params.training.batch_size, len(ds.y["train"]))
    with torch.random.fork_rng(devices=[]):
        model = classifiers.new_classifier(params.model.arch, ds, device)
        stats = train(model, make_defense(defense, params), ds.x["train"][:b].to(device), ds.y["train"][:b].to(device),
                      params.training, epochs=1, seed=seed, desc=f"counting {defense}'s passes", max_steps=1)
    c = stats["compute"]
    return (c["forward_passes"] + c["backward_passes"]) / b


def steps_for_passes(passes: int, n: int, batch_size: int, per_example: float) -> int:
    """The training steps (batches, in epoch order: full batches, then each epoch's remainder) whose
    counted passes come nearest ``passes``: within half a batch's."""
    sizes = [min(batch_size, n - s) for s in range(0, n, batch_size)]
    per_epoch = per_example * n
    full = int(passes // per_epoch)
    rest, steps = passes - full * per_epoch, full * len(sizes)
    for size in sizes:
        cost = per_example * size
        if rest < cost / 2:
            break
        rest -= cost
        steps += 1
    return max(steps, 1)


def train_matched(params: Params, data_path: str, out: str, population: str, method: str) -> dict:
    """A matched baseline ``<baselines.matched_defense>_<budget>``: that defense trained with the closed
    DO run's budget (:func:`do_budget`): ``epochs``, as many epochs as DO's defenders trained in
    total; ``passes``, as many batches as make the DO run's counted passes (within one batch)."""
    cfg = params.baselines
    budget = method.removeprefix(f"{cfg.matched_defense}_")
    seed = runtime.derive_seed(params.seed, "baseline", method)
    device = runtime.setup(seed, params.device, params.threads)
    ds = load_dataset(data_path, device, train_device="cpu")
    do = do_budget(params, population)
    n, bs = len(ds.y["train"]), params.training.batch_size
    per_epoch_steps = -(-n // bs)
    record = {"matched": budget, "do_defender_epochs": do["defender_epochs"], "do_passes": do["passes"]}
    if budget == "epochs":
        epochs, steps = do["defender_epochs"], do["defender_epochs"] * per_epoch_steps
    else:
        per_example = passes_per_example(params, ds, cfg.matched_defense, device, seed)
        steps = steps_for_passes(do["passes"], n, bs, per_example)
        epochs = -(-steps // per_epoch_steps)
        record["passes_per_example"] = per_example
        runtime.setup(seed, params.device, params.threads)  # the training starts as a plain one would
    record["steps"] = steps
    return classifiers.train_and_save(
        params, ds, out, arch=params.model.arch, defense=cfg.matched_defense, epochs=epochs, seed=seed,
        device=device, inputs=[data_path, population], stage_keys=stage_params(params, "train", "baseline"),
        desc=f"baseline {method}", role="baseline", max_steps=steps, budget=record)


# ----------------------------------------------------------------------------- population state


def load_strategy(doc: dict, sid: str, device: str):
    """A defender's classifier, or an attacker's tensors (cached perturbations)."""
    ref = checked_ref(doc, sid)
    if ref["player"] == "defender":
        return classifiers.load(ref["path"], device)[0]
    return _load_attacker(doc, sid, device)[0]


def _load_attacker(doc: dict, sid: str, device: str) -> tuple[dict, dict]:
    """An attacker's (tensors, metadata)."""
    return artifacts.load_tensors(checked_ref(doc, sid)["path"], device)


def _mixture(doc: dict, ids: list[str], probs, device: str) -> tuple[Mixture, list[str]]:
    keep = [(i, p) for i, p in zip(ids, probs, strict=True) if p > 1e-9]
    return Mixture([load_strategy(doc, i, device) for i, _ in keep], [p for _, p in keep]), [i for i, _ in keep]


def _craft_attacker(params: Params, ds: Dataset, mixture: Mixture, target: dict, seed: int,
                    iteration: int | None = None) -> tuple[dict, dict]:
    """The attacker strategy of ``iteration`` against ``mixture``: its perturbations of the payoff
    split, and of the training split when it is cached (:func:`doracle.games.at.attackers.materialize`:
    not for the last iteration's attacker, nor the closing one, ``iteration=None``, which no
    defender trains against). ``target`` holds the ids, probabilities and artifact refs of the
    mixture's members."""

    tm = params.threat_model
    mode, why = ("none", "the closing attacker: no defender trains against it") if iteration is None else \
        materialize(params, len(ds.y["train"]), ds.shape, iteration)
    seeds = {split: runtime.derive_seed(seed, split) for split in ("train", "payoff")}
    keys = {split: torch.arange(len(ds.y[split])) for split in ("train", "payoff")}
    out = {}
    with PassCounter(mixture.models) as counter:
        def on_payoff(spec):  # (the mixture's expected payoff accuracy, the perturbed payoff split)
            x = run_attack(spec, mixture, ds.x["payoff"], ds.y["payoff"], eps=tm.eps_value, norm=tm.norm,
                           seed=seeds["payoff"], keys=keys["payoff"])
            return float(mixture.expected_accuracy(x, ds.y["payoff"]).mean()), x

        name, spec, out["x_payoff"], accuracy, search = choose_attack(params.do.attacker.specs(), on_payoff)
        if mode == "cache":
            out["x_train"] = run_attack(spec, mixture, ds.x["train"], ds.y["train"], eps=tm.eps_value, norm=tm.norm,
                                        seed=seeds["train"], keys=keys["train"])
    delta = (out["x_payoff"] - ds.x["payoff"]).flatten(1)
    norms = delta.abs().amax(1) if tm.norm == "linf" else delta.norm(dim=1)
    info = {
        "attack": spec.model_dump(), "threat_model": {"norm": tm.norm, "eps": tm.eps, "eps_value": tm.eps_value},
        "target": target, "seeds": seeds, "materialize": {"train": mode, "why": why},
        "max_perturbation": float(norms.max()), "nan_count": int(torch.isnan(out["x_payoff"]).sum()),
        "target_expected_accuracy_payoff": accuracy,  # the score the choice was made on
        "compute": counter.to_json(), **({"search": search} if search else {}),
    }
    return out, info


def choose_attack(specs: dict, on_payoff) -> tuple[str, object, torch.Tensor, float, dict | None]:
    """The attacker best response's choice among ``specs`` (``do.attacker.specs()``: name -> attack):
    each is run by ``on_payoff(spec) -> (the defender mixture's expected accuracy on the payoff
    split, the perturbed split)``, and the one with the lowest accuracy is kept (the first of equals,
    ``attack`` first). (name, spec, its perturbed payoff split, its accuracy, the record of every
    candidate's accuracy; None when there was only ``attack``)."""
    best, record = None, {}
    for name, spec in specs.items():
        acc, x = on_payoff(spec)
        record[name] = {"attack": spec.model_dump(), "expected_accuracy_payoff": acc}
        if best is None or acc < best[0]:
            best = (acc, name, spec, x)
    acc, name, spec, x = best
    return name, spec, x, acc, ({"chosen": name, "candidates": record} if len(specs) > 1 else None)


def _cell(model, x_adv, y) -> tuple[float, float, dict]:
    """(accuracy, its standard error, the compute it took) of one payoff cell."""

    with PassCounter([model]) as counter:
        acc = accuracy(model, x_adv, y)
    return acc, math.sqrt(max(acc * (1 - acc), 0.0) / len(y)), counter.to_json()


def init(params: Params, data_path: str, base_path: str, attacker_out: str, out: str) -> dict:
    """Iteration 0: the base classifier, the attack against it, and their 1x1 payoff."""
    seed = runtime.derive_seed(params.seed, "init")
    device = runtime.setup(seed, params.device, params.threads)
    ds = load_dataset(data_path, device)
    base, _ = classifiers.load(base_path, device, ds.meta)
    base_ref = _strategy(base_path, "defender")
    target = {"ids": ["d000"], "probs": [1.0], "refs": {"d000": base_ref}}
    tensors, info = _craft_attacker(params, ds, Mixture([base]), target, seed, iteration=0)
    artifacts.save_tensors(attacker_out, tensors, artifacts.metadata(
        "attacker", experiment=params.experiment, params=stage_params(params, "init"), seed=seed, inputs=[data_path, base_path], **info))
    u, se, cost = _cell(base, tensors["x_payoff"], ds.y["payoff"])
    state = DOState(["d000"], ["a000"], np.array([[u]]), np.ones(1), np.ones(1), u)
    doc = _population_doc(params, state, np.array([[se]]), len(ds.y["payoff"]), {
        "d000": base_ref, "a000": _strategy(attacker_out, "attacker")}, seed)
    doc["compute"] = cost  # the attack's own compute is in the attacker's sidecar
    write_json(out, doc)
    return doc


# ----------------------------------------------------------------------------- best responses


def _best_response_setup(params: Params, data_path: str, state_path: str, iteration: int, out: str, stage: str):
    """(state, doc, seed, device, dataset), or None after writing a pass-through once converged."""
    state, doc = read_population(state_path)
    if state.converged:
        skip_artifact(out, f"converged at iteration {state.iteration}", params, stage)
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
    keys = stage_params(params, "best_response_defender")
    common = dict(defense=cfg.defense, epochs=cfg.epochs or params.training.epochs, seed=seed, device=device,
                  inputs=[data_path, state_path], stage_keys=keys, desc=f"it{iteration:03d} defender",
                  role="do_defender", iteration=iteration, opponent=opponent)
    arch, options, found = params.model.arch, {}, {}
    if params.nas.searches("defender"):
        xs = [_load_attacker(doc, c, device)[0]["x_payoff"] for c in ids]
        arch, options, found = _search_defender(params, ds, opponent, xs, probs, seed, device, iteration)
    warm = {}
    if cfg.warm_start:
        start = best_member(state)
        member, member_meta = classifiers.load(checked_ref(doc, start)["path"], device)
        if (member_meta["arch"], member_meta.get("arch_options", {})) == (arch, options):
            warm = {"init": member, "warm_start_from": start}
        else:  # DONAS chose another architecture than the best member's: train from scratch
            found["warm_start_skipped"] = f"{start} is a {member_meta['arch']} {member_meta.get('arch_options', {})}"
    if found:
        runtime.setup(seed, params.device, params.threads)  # the full training starts as a plain one would
    return classifiers.train_and_save(params, ds, out, arch=arch, arch_options=options,
                                      extra_compute=found.get("compute"), **common, **warm,
                                      **({"nas": found} if found else {}))


def _search_defender(params: Params, ds: Dataset, opponent: dict, xs: list, probs: list[float], seed: int,
                     device: str, iteration: int) -> tuple[str, dict, dict]:
    """DONAS for the defender: candidates trained for ``nas.short_epochs`` against the attacker
    mixture, scored by their expected payoff-split accuracy under it (the payoff job's cells)."""

    cfg = params.nas
    cand_seed = runtime.derive_seed(seed, "nas")

    def train_and_score(arch, options):
        runtime.setup(cand_seed, params.device, params.threads)  # every candidate starts alike
        model, stats = classifiers.fit(params, ds, arch=arch, options=options, defense=params.do.defender.defense,
                                       epochs=cfg.short_epochs, seed=cand_seed, device=device, opponent=opponent,
                                       desc=f"it{iteration:03d} defender candidate {arch}")
        cells = [_cell(model, x, ds.y["payoff"]) for x in xs]
        score = sum(p * acc for p, (acc, _, _) in zip(probs, cells, strict=True))
        return score, {"epochs": cfg.short_epochs, "cells": [acc for acc, _, _ in cells],
                       "train_seconds": stats["train_seconds"],
                       "compute": compute.add(stats["compute"], *(c for _, _, c in cells))}

    result = nas.search(cfg.space["defender"], candidates=cfg.candidates, seed=cand_seed, direction="maximize",
                        train_and_score=train_and_score)
    arch, options = nas.chosen(result)
    found = nas.record(result, params.do.defender.epochs or params.training.epochs)
    found["compute"] = compute.add(*(c["compute"] for c in result["candidates"]))
    return arch, options, found


def best_response_attacker(params: Params, data_path: str, state_path: str, iteration: int, out: str) -> dict:
    ctx = _best_response_setup(params, data_path, state_path, iteration, out, "best_response_attacker")
    if ctx is None:
        return {"skipped": True}
    state, doc, seed, device, ds = ctx
    mixture, ids = _mixture(doc, state.row_ids, state.sigma_row, device)
    t0 = time.perf_counter()
    target = {"ids": ids, "probs": mixture.probs, "refs": target_refs(doc, ids)}
    tensors, info = _craft_attacker(params, ds, mixture, target, seed, iteration=iteration)
    info["attack_seconds"] = time.perf_counter() - t0
    meta = artifacts.metadata("attacker", experiment=params.experiment, params=stage_params(params, "best_response_attacker"), seed=seed,
                              inputs=[data_path, state_path], iteration=iteration, **info)
    artifacts.save_tensors(out, tensors, meta)
    return meta


# ----------------------------------------------------------------------------- payoff, solve, prune


def _cells(params: Params, data_path: str):
    """The payoff cells' evaluator of the payoff and closing jobs: ``cells(doc, [(d, a), ...])``
    gives each defender's accuracy on the payoff split under each attacker, with standard errors."""

    def cells(doc, todo):
        device = runtime.setup(0, params.device, params.threads)
        ds = load_dataset(data_path, device)
        y = ds.y["payoff"]
        models, advs, values, errs, costs = {}, {}, {}, {}, []
        for r, c in todo:
            if r not in models:
                models[r] = load_strategy(doc, r, device)
            if c not in advs:
                advs[c] = load_strategy(doc, c, device)["x_payoff"]
            values[(r, c)], errs[(r, c)], cost = _cell(models[r], advs[c], y)
            costs.append(cost)
        return values, errs, len(y), compute.add(*costs)

    return cells


def payoff(params: Params, data_path: str, state_path: str, iteration: int, defender: str, attacker: str,
           out: str) -> dict:
    """Extend the payoff matrix by the new row and column only; known cells are reused."""
    return payoff_job(params, game_of(params), state_path, iteration, defender, attacker, out,
                      _cells(params, data_path), [data_path])


def close(params: Params, data_path: str, state_path: str, model_out: str, out: str) -> dict:
    """The closing step: an attacker crafted against the final sigma_D (``do.attacker.attack`` on the
    payoff split only: no defender trains against it), its column of accuracies, and the last
    meta-solve. Its gain is the deployed defender mixture's exploitability
    (:func:`doracle.games.population.close_job`)."""

    def respond(state, doc, sid, path):
        seed = runtime.derive_seed(params.seed, "closing")
        device = runtime.setup(seed, params.device, params.threads)
        ds = load_dataset(data_path, device)
        mixture, ids = _mixture(doc, state.row_ids, state.sigma_row, device)
        t0 = time.perf_counter()
        target = {"ids": ids, "probs": mixture.probs, "refs": target_refs(doc, ids)}
        tensors, info = _craft_attacker(params, ds, mixture, target, seed)
        info["attack_seconds"] = time.perf_counter() - t0
        meta = artifacts.metadata("attacker", experiment=params.experiment, params=stage_params(params, "closing"),
                                  seed=seed, inputs=[data_path, state_path], closing=sid, **info)
        artifacts.save_tensors(path, tensors, meta)
        return meta

    return close_job(params, game_of(params), state_path, model_out, out, respond, _cells(params, data_path),
                     [data_path])
