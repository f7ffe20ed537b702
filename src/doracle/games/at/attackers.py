"""Attacker pure strategies of the AT game, cached or computed on the fly.

An attacker strategy is an attack spec *bound to the defender mixture it was computed against*
(ids, probabilities, the members' artifact paths and sha256, recorded in its sidecar). Its
perturbation of an example is a deterministic function of the example and its key (its index in
the split): the attack's randomness is keyed noise (:mod:`doracle.attacks.noise`), so it does not
depend on the batch it is computed in (except for :data:`CACHED_ONLY` attacks, which are always
cached). Recomputed perturbations run in fp32 and against exactly the recorded probabilities.

* **payoff split**: always computed by the attacker job and stored (float32 ``x_payoff``, exact):
  payoff cells are then forward passes.
* **training split** (``do.attacker.materialize``): ``cache`` stores ``x_train`` too, and the
  defender best response indexes it; ``on_the_fly`` stores nothing and the defender best response
  recomputes the perturbation per training batch, on the (augmented) batch, against the frozen
  bound mixture. ``auto`` caches when ``do.capacity`` attackers' training perturbations fit
  ``do.attacker.cache_budget_mb`` and batches are not augmented.

Memory of a defender best response: cached, O(attackers in the support x training split);
on the fly, O(distinct defender models the attackers in the support are bound to).
"""

from __future__ import annotations

import math

import torch

from doracle import artifacts
from doracle.attacks import run_attack
from doracle.config import CACHED_ONLY, AttackSpec, Params
from doracle.errors import ArtifactError
from doracle.games import classifiers
from doracle.models.mixture import Mixture
from doracle.runtime import to_device


def max_attackers(params: Params) -> int:
    """The most attackers a population can hold: ``do.capacity`` when the capacity pruner runs,
    else every iteration's (``do.iterations`` + 1)."""
    grown = params.do.iterations + 1
    return min(grown, params.do.capacity) if "capacity" in params.do.pruners else grown


def cache_bytes(params: Params, n_train: int, shape) -> int:
    """Bytes of the largest population's cached training perturbations (float32)."""
    return max_attackers(params) * n_train * math.prod(shape) * 4


def materialize(params: Params, n_train: int, shape, iteration: int | None = None) -> tuple[str, str]:
    """(``cache`` | ``on_the_fly`` | ``none``, why) for the training split of the attacker of
    ``iteration`` under ``do.attacker.materialize``. ``none`` where no defender will train against
    it: the last iteration's attacker, and every attacker when ``do.defender.opponent_weight`` is 0.
    ``auto`` chooses by counted passes: cached, each attacker perturbs the training split once; on
    the fly, each defender best response perturbs every batch of each of its epochs. So ``auto``
    caches unless a defender trains for less than an epoch, the batches are augmented, or the
    largest population's perturbations do not fit ``do.attacker.cache_budget_mb``."""
    if iteration is not None and iteration >= params.do.iterations:
        return "none", f"iteration {iteration} is the last: no defender best response trains against it"
    if params.do.defender.opponent_weight == 0:
        return "none", "do.defender.opponent_weight is 0: no defender trains against attackers"
    mode = params.do.attacker.materialize
    if mode != "auto":
        return mode, f"do.attacker.materialize: {mode}"
    cached_only = [spec.name for spec in params.do.attacker.specs().values() if spec.name in CACHED_ONLY]
    if cached_only:
        return "cache", f"{cached_only[0]} attacker strategies are cached (CACHED_ONLY)"
    if params.augmentation != "none":
        return "on_the_fly", f"training batches are augmented ({params.augmentation})"
    epochs = params.do.defender.epochs or params.training.epochs
    cached, fly = n_train, epochs * n_train  # attacked examples per attacker, per defender best response
    if fly < cached:
        return "on_the_fly", (f"on the fly attacks {fly} examples per defender best response, fewer than the "
                              f"{cached} a cache attacks")
    need = cache_bytes(params, n_train, shape)
    budget = params.do.attacker.cache_budget_mb * 2**20
    k = max_attackers(params)
    if need <= budget:
        return "cache", (f"cached, each attacker attacks the {cached} training examples once, on the fly each "
                         f"defender best response {fly}; {k} cached attackers take {need / 2**20:.1f} MB <= "
                         f"{budget / 2**20:.0f} MB")
    return "on_the_fly", f"{k} cached attackers would take {need / 2**20:.0f} MB > {budget / 2**20:.0f} MB"


def target_refs(doc: dict, ids: list[str]) -> dict:
    """Paths and sha256 of the defenders an attacker is bound to (from the population)."""
    return {i: {"path": doc["strategies"][i]["path"], "sha256": doc["strategies"][i]["sha256"]} for i in ids}


class ModelCache:
    """Defender models loaded once (by sha256) and frozen, shared by the attackers bound to them."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.models: dict[str, torch.nn.Module] = {}

    def get(self, ref: dict) -> torch.nn.Module:
        if ref["sha256"] not in self.models:
            artifacts.check_sha256(ref["path"], ref["sha256"], "since an attacker strategy was bound to it")
            model = classifiers.load(ref["path"], self.device)[0].requires_grad_(False)
            self.models[ref["sha256"]] = model
        return self.models[ref["sha256"]]


class AttackerStrategy:
    """One attacker strategy as a defender best response uses it on the training split."""

    def __init__(self, sid: str, tensors: dict, meta: dict, models: ModelCache) -> None:
        self.sid = sid
        self.meta = meta
        cached = tensors.get("x_train")  # only the training split is needed here, on the device
        self.cached = None if cached is None else cached.to(models.device)
        self.mixture = None
        if self.cached is None:
            target = meta["target"]
            if "refs" not in target:
                raise ArtifactError(f"attacker {sid}: neither cached training perturbations nor the defenders it is "
                                    "bound to are recorded (an artifact of an older doracle: rerun its job)")
            self.mixture = Mixture([models.get(target["refs"][i]) for i in target["ids"]])
            self.mixture.probs = [float(p) for p in target["probs"]]  # exactly those it was computed with
            self.spec = AttackSpec.model_validate(meta["attack"])
            self.eps, self.norm = meta["threat_model"]["eps_value"], meta["threat_model"]["norm"]
            self.seed = int(meta["seeds"]["train"])

    @property
    def models(self) -> list:
        return [] if self.mixture is None else self.mixture.models

    def perturb(self, x: torch.Tensor, y: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """x_adv of training examples ``keys`` (their split indices), given as (augmented) ``x``."""
        if self.cached is not None:
            return self.cached[keys.to(self.cached.device)].to(x.device)

        return run_attack(self.spec, self.mixture, x, y, eps=self.eps, norm=self.norm, seed=self.seed,
                          keys=keys, batch_size=max(len(x), 1))


class Opponent:
    """The attacker mixture a defender best response trains against: each example of a batch
    draws one attacker from ``probs`` (from the training generator, the same draws whether the
    attackers are cached or computed on the fly) and is perturbed by it."""

    def __init__(self, strategies: list[AttackerStrategy], probs: list[float]) -> None:
        self.strategies = strategies
        self.probs = torch.as_tensor(probs, dtype=torch.float32)

    @property
    def models(self) -> list:
        return list({id(m): m for s in self.strategies for m in s.models}.values())  # each model once

    def __call__(self, x: torch.Tensor, y: torch.Tensor, keys: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        pick = torch.multinomial(self.probs, len(keys), replacement=True, generator=gen)
        out = torch.empty_like(x)
        for j in torch.unique(pick).tolist():
            sel = (pick == j).nonzero().squeeze(1)
            sel_dev = to_device(sel, x.device)
            out[sel_dev] = self.strategies[j].perturb(x[sel_dev], y[sel_dev], keys[sel])
        return out
