"""ERM, PGD-AT, FGSM-RS, TRADES and local-ball training."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from doracle.attacks import ATTACKS
from doracle.attacks.base import project
from doracle.config import AttackSpec
from doracle.defenses import DEFENSES
from doracle.defenses.base import Defense
from doracle.models.mixture import Mixture, eval_mode


def _adversary(defense: Defense, model, x, y, gen):
    """x_adv from the defense's own registered attack, crafted with the model in eval mode."""
    with eval_mode([model]):
        return ATTACKS.get(defense.attack.name)(Mixture([model]), x, y, eps=defense.eps, norm=defense.norm,
                                                spec=defense.attack, generator=gen).detach()


@DEFENSES.register("erm")
class ERM(Defense):
    """Empirical risk minimisation: cross-entropy on clean inputs."""

    name = "erm"

    def loss(self, model, x, y, gen):
        return F.cross_entropy(model(x), y)


@DEFENSES.register("pgd_at")
class PGDAT(Defense):
    """Madry et al. 2018: cross-entropy on PGD examples (random start) against the model itself."""

    name = "pgd_at"
    default_attack = AttackSpec(name="pgd", steps=5, rel_step_size=0.4, restarts=1, random_start=True)

    def loss(self, model, x, y, gen):
        return F.cross_entropy(model(_adversary(self, model, x, y, gen)), y)


@DEFENSES.register("fgsm_rs")
class FGSMRS(Defense):
    """"Fast is better than free" (Wong, Rice & Kolter 2020): a uniform random start in the
    eps-ball, one signed-gradient step of 1.25 eps, projected back; cyclic learning rate."""

    name = "fgsm_rs"
    default_attack = AttackSpec(name="fgsm", steps=1, rel_step_size=1.25, restarts=1, random_start=True)
    default_schedule = "cyclic"

    def loss(self, model, x, y, gen):
        return F.cross_entropy(model(_adversary(self, model, x, y, gen)), y)


def _kl_adversary(model, x, eps, norm, steps, step, gen):
    """TRADES' inner maximisation: PGD on KL(f(x) || f(x')) from x + 0.001 N(0, I)."""
    with eval_mode([model]):
        with torch.no_grad():
            p_clean = F.softmax(model(x), 1)
        noise = torch.randn(x.shape, generator=gen).to(x.device)
        x_adv = (x + 0.001 * noise).clamp(0, 1)
        for _ in range(steps):
            x_adv.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(model(x_adv), 1), p_clean, reduction="sum")
            (g,) = torch.autograd.grad(kl, x_adv)
            d = g.sign() if norm == "linf" else g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
            x_adv = x + project(x_adv.detach() + step * d - x, x, eps, norm)
    return x_adv.detach()


@DEFENSES.register("trades")
class TRADES(Defense):
    """Zhang et al. 2019: CE on *clean* inputs + beta * KL(f(x) || f(x')), x' by PGD on the KL."""

    name = "trades"
    default_attack = AttackSpec(name="pgd", steps=5, rel_step_size=0.4, restarts=1, random_start=True)

    def loss(self, model, x, y, gen):
        x_adv = _kl_adversary(model, x, self.eps, self.norm, self.attack.steps, self.attack.rel_step_size * self.eps, gen)
        logits = model(x)
        natural = F.cross_entropy(logits, y)  # clean inputs (the DALE code's baseline got this wrong)
        robust = F.kl_div(F.log_softmax(model(x_adv), 1), F.softmax(logits, 1), reduction="batchmean")
        return natural + self.opts.beta * robust


@DEFENSES.register("local_ball")
class LocalBall(Defense):
    """Local-ball training, our formulation of Lu & Kumar 2021 (no public code; docs/methods.md).

    A weak one-step adversary (FGSM from a random start) finds x_w in the eps-ball. Local term:
    the model must be robust inside a small ball of radius r = radius * eps around x_w, taken
    as one signed-gradient step of size r from a random point of that ball (kept inside the eps-ball
    around x): CE(f(x_l), y). Global term: the local balls are tied to the clean point by
    KL(f(x) || f(x_l)), so robustness spreads over the whole eps-ball. Cost: two gradient steps
    per batch (PGD-5 AT: five).
    """

    name = "local_ball"
    default_attack = AttackSpec(name="fgsm", steps=1, rel_step_size=1.25, restarts=1, random_start=True)

    def loss(self, model, x, y, gen):
        x_w = _adversary(self, model, x, y, gen)
        r = self.opts.radius * self.eps
        with eval_mode([model]):
            u = (torch.rand(x.shape, generator=gen).to(x.device) * 2 - 1) * r
            x_l = x + project(x_w + u - x, x, self.eps, self.norm)
            x_l.requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(model(x_l), y), x_l)
            x_l = x + project(x_l.detach() + r * g.sign() - x, x, self.eps, self.norm)
        logits = model(x)
        logits_l = model(x_l.detach())
        local = F.cross_entropy(logits_l, y)
        glob = F.kl_div(F.log_softmax(logits_l, 1), F.softmax(logits, 1), reduction="batchmean")
        return local + self.opts.weight * glob
