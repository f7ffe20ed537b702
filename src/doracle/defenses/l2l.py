"""L2L training (Jiang et al., AISTATS 2021): classifier and attacker network trained jointly.

Per batch: delta = g(x, normalised grad); the classifier takes an SGD/Adam step on CE(f(x + delta))
(robust loss only); the attacker an Adam step (attacker_lr, 1e-3 in the paper) on -CE. Here the
attacker steps first, against the classifier before its update, on the same delta the classifier
then trains on (the order within a batch is a detail the paper's code does not pin down).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from doracle.attacks.l2l import new_attacker, perturb
from doracle.defenses import DEFENSES
from doracle.defenses.base import Defense
from doracle.models.mixture import Mixture, eval_mode
from doracle.runtime import optimizer_step


@DEFENSES.register("l2l")
class L2L(Defense):
    name = "l2l"
    adversary_learns = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.net = None
        self.opt = None
        self.attacker_losses: list[float] = []

    def _build(self, in_chans: int, gen, device) -> None:
        self.net = new_attacker(in_chans, self.opts.width, gen, device)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=self.opts.attacker_lr)

    def state(self) -> dict:
        if self.net is None:
            return {"attacker_losses": []}
        return {"in_chans": self.net.in_chans, "net": self.net.state_dict(), "opt": self.opt.state_dict(),
                "attacker_losses": list(self.attacker_losses)}

    def load_state(self, state: dict) -> None:
        self.attacker_losses = list(state["attacker_losses"])
        if "net" in state:
            device = next(iter(state["net"].values())).device
            self._build(state["in_chans"], torch.Generator().manual_seed(0), device)  # weights overwritten below
            self.net.load_state_dict(state["net"])
            self.opt.load_state_dict(state["opt"])

    def loss(self, model, x, y, gen):
        if self.net is None:
            self._build(x.shape[1], gen, x.device)
        with eval_mode([model]):
            delta = perturb(self.net, Mixture([model]), x, y, eps=self.eps, norm=self.norm,
                            two_step=self.opts.two_step)
            att = F.cross_entropy(model(x + delta), y)
            grads = torch.autograd.grad(-att, list(self.net.parameters()))
        for p, g in zip(self.net.parameters(), grads, strict=True):
            p.grad = g
        optimizer_step(self.opt)
        self.attacker_losses.append(float(att.detach()))
        return F.cross_entropy(model(x + delta.detach()), y)

    def stats(self) -> dict:
        h = self.attacker_losses
        k = max(1, len(h) // 10)
        return {"attacker_ce_first": sum(h[:k]) / k if h else None, "attacker_ce_last": sum(h[-k:]) / k if h else None}
