"""AMP: adversarial model perturbation (Zheng, Zhang & Mao, CVPR 2021).

min_theta max_{||Delta|| <= eps} L(theta + Delta). :class:`AMP` wraps any optimizer (it shares the
base optimizer's param_groups, so LR schedulers work on either): ``step(closure)`` takes the
gradient at theta, makes ``inner_steps`` ascent steps Delta <- Delta + zeta * grad, each projected
per tensor onto ||Delta||_2 <= eps, takes the gradient at theta + Delta, restores theta and lets
the base optimizer step with that gradient. A generalisation regulariser (close to AWP), not an
input-robustness method: the defense trains on clean inputs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from doracle.defenses import DEFENSES
from doracle.defenses.base import Defense
from doracle.runtime import optimizer_step


class AMP(torch.optim.Optimizer):
    def __init__(self, base: torch.optim.Optimizer, *, eps: float = 0.5, inner_lr: float = 1.0,
                 inner_steps: int = 1) -> None:
        if eps <= 0 or inner_lr <= 0 or inner_steps < 1:
            raise ValueError("AMP needs eps > 0, inner_lr > 0, inner_steps >= 1")
        self.base = base
        self.eps, self.inner_lr, self.inner_steps = eps, inner_lr, inner_steps
        self.last_perturbation_norms: list[float] = []

    # The base optimizer's own objects, always: loading a state into the base (a resumed run)
    # replaces them, and a copy taken here would then miss every later learning-rate change.
    param_groups = property(lambda self: self.base.param_groups,
                            lambda self, v: setattr(self.base, "param_groups", v))
    state = property(lambda self: self.base.state, lambda self, v: setattr(self.base, "state", v))
    defaults = property(lambda self: self.base.defaults, lambda self, v: setattr(self.base, "defaults", v))

    def _params(self):
        return [p for g in self.param_groups for p in g["params"] if p.requires_grad]

    @torch.no_grad()
    def step(self, closure):
        if closure is None:
            raise ValueError("AMP.step needs a closure that zeroes grads, computes the loss and calls backward")
        params = self._params()
        backup = [p.detach().clone() for p in params]
        deltas = [torch.zeros_like(p) for p in params]
        with torch.enable_grad():
            loss = closure()  # gradient at theta
        for _ in range(self.inner_steps):
            for p, d, b in zip(params, deltas, backup, strict=True):
                if p.grad is None:
                    continue
                d.add_(p.grad, alpha=self.inner_lr)
                n = d.norm()
                if n > self.eps:
                    d.mul_(self.eps / n)
                p.copy_(b + d)
            with torch.enable_grad():
                closure()  # gradient at theta + Delta
        self.last_perturbation_norms = [float(d.norm()) for d in deltas]
        for p, b in zip(params, backup, strict=True):
            p.copy_(b)
        optimizer_step(self.base)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.base.zero_grad(set_to_none=set_to_none)


@DEFENSES.register("amp")
class AMPDefense(Defense):
    name = "amp"

    def loss(self, model, x, y, gen):
        return F.cross_entropy(model(x), y)

    def make_optimizer(self, model, base):
        return AMP(base, eps=self.opts.eps, inner_lr=self.opts.inner_lr, inner_steps=self.opts.inner_steps)
