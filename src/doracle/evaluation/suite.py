"""The evaluation suite: one model (a single classifier or a mixture) under every attack.

For a mixture (members f_i, probabilities p_i) every number is the exact expectation
sum_i p_i 1[f_i(x + delta) = y] per example, never one sampled draw. The suite runs, as configured
in ``params.evaluation`` and recorded in the output:

* gradient-masking checks first (logits, non-zero input gradients, determinism);
* each of ``attacks`` (FGSM, PGD, ARC, ...) on the mixture's expected loss / expected accuracy;
* for mixtures of several members, each of ``per_member`` run on every member separately
  (``<name>_per_member``: per example, the worst member's perturbation for the mixture);
* AutoAttack (pyautoattack) on the logit-averaged ensemble (``autoattack``) and on every member
  (``autoattack_per_member``);
* ``worst_case``: the per-example minimum over everything above (and clean accuracy);
* robust accuracy as a function of eps (``robust_accuracy_curve``).

Resumable: each finished attack ("unit") is written to a state file at once. A rerun with the same
models, data, attack set and seed reuses finished units; a state made for anything else is
refused (discarded with a warning, never mixed in). The state is removed after success.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from doracle import runtime
from doracle.artifacts import read_json, write_json
from doracle.attacks import run_attack
from doracle.config import Params, parse_fraction
from doracle.errors import ArtifactError
from doracle.evaluation.autoattack import LogitAverage, run_autoattack
from doracle.evaluation.checks import run_checks
from doracle.models.mixture import Mixture, eval_mode
from doracle.registry import Registry


@dataclass
class Target:
    label: str
    mixture: Mixture
    ids: list[str]
    shas: list[str]
    info: dict = field(default_factory=dict)

    @property
    def probs(self) -> list[float]:
        return self.mixture.probs


# ----------------------------------------------------------------------------- targets


# ----------------------------------------------------------------------------- resumable state


class State:
    def __init__(self, path: str | None, fingerprint: str, log) -> None:
        self.path, self.fingerprint, self.units = (Path(path) if path else None), fingerprint, {}
        if self.path and self.path.is_file():
            try:  # a cache of finished attacks, not an output: a damaged one is started over
                doc = read_json(self.path)
            except ArtifactError as exc:
                log(f"evaluation state {self.path} is damaged ({exc}): not resuming from it, starting over")
                return
            units = doc.get("units")
            if doc.get("fingerprint") != fingerprint:
                log(f"evaluation state {self.path} was made for other models, data or attacks: "
                    "not resuming from it, starting over")
            elif not isinstance(units, dict) or not all(
                    isinstance(v, list) and all(isinstance(a, int | float) for a in v) for v in units.values()):
                log(f"evaluation state {self.path} holds no valid finished attacks: not resuming from it, starting over")
            else:
                self.units = units
                log(f"resuming: {len(self.units)} finished attack(s) reused from {self.path}")

    def get(self, key: str):
        v = self.units.get(key)
        return None if v is None else torch.tensor(v)

    def put(self, key: str, value: torch.Tensor) -> None:
        self.units[key] = [float(a) for a in value.cpu()]
        if self.path:
            write_json(self.path, {"fingerprint": self.fingerprint, "units": self.units})

    def done(self) -> None:
        if self.path:
            self.path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- evaluators

EVALUATORS: Registry = Registry("evaluator")


@dataclass
class Context:
    params: Params
    x: torch.Tensor
    y: torch.Tensor
    seed: int
    device: str
    stochastic: bool = False
    member_cache: dict = field(default_factory=dict)
    adversarial: dict = field(default_factory=dict)  # the mixture's perturbed inputs per attack (diagnostics)


def _attack(ctx: Context, spec, mixture: Mixture, seed_tag, eps: float | None = None):
    tm = ctx.params.threat_model
    return run_attack(spec, mixture, ctx.x, ctx.y, eps=tm.eps_value if eps is None else eps, norm=tm.norm,
                      seed=runtime.derive_seed(ctx.seed, *seed_tag))


@EVALUATORS.register("attacks")
def eval_attacks(ctx: Context, t: Target):
    def run(spec, name):
        ctx.adversarial[name] = _attack(ctx, spec, t.mixture, (name,))
        return t.mixture.expected_accuracy(ctx.adversarial[name], ctx.y)

    for name, spec in ctx.params.evaluation.attacks.items():
        yield name, lambda spec=spec, name=name: run(spec, name)


#: units that are diagnostics, not attacks: kept out of robust accuracy and the worst case
DIAGNOSTIC = "diag:"


@torch.no_grad()
def disagreement(models, x: torch.Tensor) -> torch.Tensor:
    """Per example, 1 where the members' predicted classes are not all the same, else 0."""
    preds = torch.stack([m(x).argmax(1) for m in models])
    return (preds != preds[0]).any(0).float()


@EVALUATORS.register("disagreement")
def eval_disagreement(ctx: Context, t: Target):
    """A mixture's members' disagreement on the examples its PGD attack (the first attack, without
    one named pgd) perturbed: a mixture whose members all fail alike cannot beat its best member."""
    if len(t.mixture.models) < 2 or not ctx.params.evaluation.attacks:
        return
    attacks = ctx.params.evaluation.attacks
    name = "pgd" if "pgd" in attacks else next(iter(attacks))

    def compute():
        x = ctx.adversarial.get(name)
        if x is None:  # a resumed evaluation: the attack's unit came from the state
            x = _attack(ctx, attacks[name], t.mixture, (name,))
        return disagreement(t.mixture.models, x)

    yield f"{DIAGNOSTIC}disagreement_{name}", compute


def _per_member(ctx: Context, t: Target, key: str, make_adv):
    """Per example, the worst (for the mixture) of the perturbations computed on each member."""
    worst = torch.ones(len(ctx.y), device=ctx.x.device)
    for m, sha in zip(t.mixture.models, t.shas, strict=True):
        ck = (sha, key)
        if ck not in ctx.member_cache:  # the same member in several targets is attacked once
            ctx.member_cache[ck] = make_adv(m, sha)
        worst = torch.minimum(worst, t.mixture.expected_accuracy(ctx.member_cache[ck], ctx.y))
    return worst


@EVALUATORS.register("per_member")
def eval_per_member(ctx: Context, t: Target):
    if len(t.mixture.models) < 2:
        return
    for name in ctx.params.evaluation.per_member:
        spec = ctx.params.evaluation.attacks[name]
        yield f"{name}_per_member", lambda spec=spec, name=name: _per_member(
            ctx, t, name, lambda m, sha: _attack(ctx, spec, Mixture([m]), (name, "member", sha)))


@EVALUATORS.register("autoattack")
def eval_autoattack(ctx: Context, t: Target):
    cfg = ctx.params.evaluation.autoattack
    if cfg is None:
        return
    tm = ctx.params.threat_model

    def aa(model, tag):
        return run_autoattack(model, ctx.x, ctx.y, eps=tm.eps_value, norm=tm.norm, cfg=cfg,
                              seed=runtime.derive_seed(ctx.seed, "autoattack", tag), stochastic=ctx.stochastic,
                              device=ctx.device)

    single = len(t.mixture.models) == 1
    model = t.mixture.models[0] if single else LogitAverage(t.mixture.models, t.probs)
    yield "autoattack", lambda: t.mixture.expected_accuracy(aa(model, t.shas[0] if single else t.label), ctx.y)
    if cfg.per_member and not single:
        yield "autoattack_per_member", lambda: _per_member(ctx, t, "autoattack", lambda m, sha: aa(m, sha))


def eps_curve(ctx: Context, t: Target):
    cfg = ctx.params.evaluation.eps_curve
    if cfg is None:
        return
    for e in cfg.eps:
        v = float(parse_fraction(e))
        yield f"curve:{e}", lambda v=v, e=e: (t.mixture.expected_accuracy(ctx.x, ctx.y) if v == 0 else
                                              t.mixture.expected_accuracy(_attack(ctx, cfg.attack, t.mixture,
                                                                                  ("curve", e), eps=v), ctx.y))


# ----------------------------------------------------------------------------- the suite


def threat_model_record(params: Params, n: int, seed: int) -> dict:
    tm, ev = params.threat_model, params.evaluation
    return {
        "norm": tm.norm, "eps": tm.eps, "eps_value": tm.eps_value,
        "attacks": {k: v.model_dump() for k, v in ev.attacks.items()},
        "per_member": list(ev.per_member),
        "autoattack": None if ev.autoattack is None else {**ev.autoattack.model_dump(), "package": "pyautoattack"},
        "eps_curve": None if ev.eps_curve is None else ev.eps_curve.model_dump(),
        "n_examples": n, "split": "test", "seed": seed,
    }


def run_suite(params: Params, target: Target, x: torch.Tensor, y: torch.Tensor, *, seed: int, device: str,
              state: State, log=print) -> dict:
    """Every check and attack of params.evaluation on ``target``: clean accuracy, robust accuracy
    per attack and the per-example worst case, the eps curve, the checks. Members keep their
    train/eval modes (and BatchNorm statistics): every attack runs them in eval mode and restores."""
    ctx = Context(params, x, y, seed, device)
    checks = run_checks(target.mixture.models, x, y)
    ctx.stochastic = checks["stochastic"]
    for w in checks["warnings"]:
        log(f"WARNING: {target.label}: {w}")
    with eval_mode(target.mixture.models):
        clean = target.mixture.expected_accuracy(x, y)
    per_example = {}
    units = [u for name in EVALUATORS.names() for u in EVALUATORS.get(name)(ctx, target)]
    units += list(eps_curve(ctx, target))
    for key, compute in runtime.progress(units, f"evaluate {target.label}", unit="attack"):
        got = state.get(key)
        if got is None:
            t1 = time.perf_counter()
            with eval_mode(target.mixture.models):
                got = compute().detach().cpu()
            state.put(key, got)
            log(f"{target.label}: {key}: {float(got.mean()):.4f} ({time.perf_counter() - t1:.1f} s)")
        per_example[key] = got.to(clean.device)
    attacked = {k: v for k, v in per_example.items() if not k.startswith(("curve:", DIAGNOSTIC))}
    robust = {k: float(v.mean()) for k, v in attacked.items()}
    attacked = list(attacked.values())
    worst = torch.stack([clean, *attacked]).amin(0)  # per example: its expected accuracy under the worst attack
    robust["worst_case"] = float(worst.mean())
    curve = [{"eps": e, "eps_value": float(parse_fraction(e)), "accuracy": float(per_example[f"curve:{e}"].mean())}
             for e in (params.evaluation.eps_curve.eps if params.evaluation.eps_curve else [])]
    return {
        "clean_accuracy": float(clean.mean()), "robust_accuracy": robust,
        "robust_accuracy_curve": {"attack": params.evaluation.eps_curve.attack.model_dump(), "points": curve}
        if curve else None,
        "checks": checks,
        "diagnostics": {k.removeprefix(DIAGNOSTIC): float(v.mean()) for k, v in per_example.items()
                        if k.startswith(DIAGNOSTIC)},
        # the test examples in order (the same for every model): paired comparisons in metrics.json
        "worst_case_per_example": [round(float(v), 6) for v in worst.cpu()],
    }
