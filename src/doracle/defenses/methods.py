"""ERM, PGD-AT, FGSM-RS, TRADES and local-ball training."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from doracle.attacks import ATTACKS
from doracle.attacks.base import lp_norm, project, random_start, steepest
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


def kl_clean_adv(logits_clean, logits_adv):
    """TRADES' robust term KL(f(x) || f(x')) = sum p_clean (log p_clean - log p_adv), batch mean.
    (``F.kl_div(input, target)`` is KL(target || input): the adversarial log-probabilities go in
    as ``input``.)"""
    return F.kl_div(F.log_softmax(logits_adv, 1), F.softmax(logits_clean, 1), reduction="batchmean")


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
            x_adv = x + project(x_adv.detach() + step * steepest(g, norm) - x, x, eps, norm)
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
        return natural + self.opts.beta * kl_clean_adv(logits, model(x_adv))


def _pull_into_ball(x, centre, cand, eps, norm, iters: int = 30):
    """The point of the segment centre -> cand farthest from centre that lies in the eps-ball
    around x and in [0, 1] (bisection; centre must lie in both, cand in the ball it was drawn in)."""
    lo = torch.zeros(len(x), device=x.device)
    hi = torch.ones(len(x), device=x.device)
    p = float("inf") if norm == "linf" else 2.0

    def inside(t):
        pt = centre + t.view(-1, *[1] * (x.dim() - 1)) * (cand - centre)
        return (lp_norm(pt - x, p) <= eps * (1 + 1e-6)) & (pt.flatten(1).amin(1) >= 0) & (pt.flatten(1).amax(1) <= 1)

    full = inside(hi)
    for _ in range(iters):
        mid = (lo + hi) / 2
        ok = inside(mid)
        lo = torch.where(ok, mid, lo)
        hi = torch.where(ok, hi, mid)
    t = torch.where(full, torch.ones_like(lo), lo)
    return centre + t.view(-1, *[1] * (x.dim() - 1)) * (cand - centre)


@DEFENSES.register("local_ball")
class LocalBall(Defense):
    """Local-ball training, our formulation of Lu & Kumar 2021 (no public code; docs/methods.md).

    A weak one-step adversary (FGSM from a random start) finds x_w in the eps-ball. Local term:
    the model must be robust inside the ball B(x_w, r) of radius r = radius * eps around it: x_l
    is one steepest-ascent step of size r from a random point of that ball, kept inside
    B(x_w, r), the eps-ball around x and [0, 1]; loss CE(f(x_l), y). Global term:
    KL(f(x) || f(x_l)) ties the local balls to the clean point. In effect a two-step adversary
    (FGSM, then one step of r) plus a TRADES-style consistency term: 8 per-example forward or
    backward passes per training example against PGD-5 AT's 12 (counted; docs/methods.md).
    """

    name = "local_ball"
    default_attack = AttackSpec(name="fgsm", steps=1, rel_step_size=1.25, restarts=1, random_start=True)

    def local_points(self, model, x, y, gen) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_w, x_l): the weak adversary's point and the local adversary inside B(x_w, r)."""
        x_w = _adversary(self, model, x, y, gen)
        r = self.opts.radius * self.eps
        with eval_mode([model]):
            x_l = _pull_into_ball(x, x_w, x_w + random_start(x_w, r, self.norm, gen), self.eps, self.norm)
            x_l.requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(model(x_l), y), x_l)
            cand = x_w + project(x_l.detach() + r * steepest(g, self.norm) - x_w, x_w, r, self.norm)
            x_l = _pull_into_ball(x, x_w, cand, self.eps, self.norm)
        return x_w, x_l.detach()

    def loss(self, model, x, y, gen):
        _, x_l = self.local_points(model, x, y, gen)
        logits = model(x)
        logits_l = model(x_l)
        return F.cross_entropy(logits_l, y) + self.opts.weight * kl_clean_adv(logits, logits_l)
