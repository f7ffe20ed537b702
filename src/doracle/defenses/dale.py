"""DALE (Robey, Chamon, Pappas, Hassani & Ribeiro, NeurIPS 2021, "Adversarial Robustness with
Semi-Infinite Constrained Learning").

Per batch: perturbations sampled by the Langevin chain (attacks/langevin.py; Gaussian or
Laplacian noise), or the TRADES-style KL attack for the ``kl`` variant; loss = robust loss +
nu * clean CE; primal-dual: nu <- max(0, nu + eta_nu * (clean CE - rho)). nu is clamped at 0 and
never divides anything, so nu = 0 is an ordinary state on CPU too (the reference code crashes there).
"""

from __future__ import annotations

import torch.nn.functional as F

from doracle.attacks.langevin import langevin
from doracle.config import AttackSpec
from doracle.defenses import DEFENSES
from doracle.defenses.base import Defense
from doracle.defenses.methods import _kl_adversary, kl_clean_adv
from doracle.models.mixture import Mixture, eval_mode


@DEFENSES.register("dale")
class DALE(Defense):
    name = "dale"
    # K = 7 (the paper's MNIST setting), eta = 0.007 at eps 8/255, i.e. about 0.22 eps
    default_attack = AttackSpec(name="langevin", steps=7, rel_step_size=0.22, restarts=1, random_start=True)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.nu = float(self.opts.nu0)
        self.nu_history: list[float] = []

    def loss(self, model, x, y, gen):
        o = self.opts
        if o.variant == "kl":
            x_adv = _kl_adversary(model, x, self.eps, self.norm, self.attack.steps,
                                  self.attack.rel_step_size * self.eps, gen)
        else:
            with eval_mode([model]):
                x_adv = langevin(Mixture([model]), x, y, eps=self.eps, norm=self.norm, spec=self.attack,
                                 generator=gen, noise=o.noise, laplacian=o.variant == "laplacian")
        logits_clean = model(x)
        clean = F.cross_entropy(logits_clean, y)
        logits_adv = model(x_adv)
        if o.variant == "kl":
            robust = kl_clean_adv(logits_clean, logits_adv)  # KL(p_clean || p_adv), as TRADES and advbench
        else:
            robust = F.cross_entropy(logits_adv, y)
        loss = robust + self.nu * clean
        if o.primal_dual:
            self.nu = max(0.0, self.nu + o.eta_nu * (float(clean.detach()) - o.rho))
        self.nu_history.append(self.nu)
        return loss

    def state(self) -> dict:
        return {"nu": self.nu, "nu_history": list(self.nu_history)}

    def load_state(self, state: dict) -> None:
        self.nu, self.nu_history = float(state["nu"]), list(state["nu_history"])

    def stats(self) -> dict:
        h = self.nu_history
        return {"nu_final": self.nu, "nu_min": min(h, default=self.nu), "nu_max": max(h, default=self.nu)}
