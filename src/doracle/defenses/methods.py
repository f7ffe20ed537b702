"""ERM and PGD adversarial training (Madry et al. 2018)."""

from __future__ import annotations

import torch.nn.functional as F

from doracle.attacks import ATTACKS
from doracle.config import AttackSpec
from doracle.defenses import DEFENSES
from doracle.defenses.base import Defense
from doracle.models.mixture import Mixture, eval_mode


@DEFENSES.register("erm")
class ERM(Defense):
    """Empirical risk minimisation: cross-entropy on clean inputs."""

    name = "erm"

    def loss(self, model, x, y, gen):
        return F.cross_entropy(model(x), y)


@DEFENSES.register("pgd_at")
class PGDAT(Defense):
    """Cross-entropy on PGD examples (random start) crafted against the model being trained."""

    name = "pgd_at"
    default_attack = AttackSpec(name="pgd", steps=5, rel_step_size=0.4, restarts=1, random_start=True)

    def loss(self, model, x, y, gen):
        mix = Mixture([model])
        with eval_mode([model]):
            x_adv = ATTACKS.get(self.attack.name)(mix, x, y, eps=self.eps, norm=self.norm,
                                                  spec=self.attack, generator=gen).detach()
        return F.cross_entropy(model(x_adv), y)
