"""AutoAttack (the ``pyautoattack`` package: an implementation we did not write) on a single
classifier or on the logit-averaged ensemble of a mixture."""

from __future__ import annotations

import contextlib
import io
import logging

import torch
from torch import nn

from doracle.models.mixture import eval_mode


class LogitAverage(nn.Module):
    """sum_i p_i f_i(x): the deterministic ensemble AutoAttack attacks for a mixture."""

    def __init__(self, models, probs) -> None:
        super().__init__()
        self.members = nn.ModuleList(models)
        self.probs = list(probs)

    def forward(self, x):
        return sum(p * m(x) for m, p in zip(self.members, self.probs, strict=True))


def run_autoattack(model: nn.Module, x, y, *, eps: float, norm: str, cfg, seed: int, stochastic: bool,
                   device: str) -> torch.Tensor:
    """x_adv from AutoAttack; ``cfg`` is params.evaluation.autoattack."""
    from pyautoattack import AutoAttack

    norm_name = {"linf": "Linf", "l2": "L2"}[norm]
    version = "rand" if stochastic else cfg.version
    kwargs = {"attacks": list(cfg.attacks)} if version == "custom" else {}
    with eval_mode([model]):
        aa = AutoAttack(model, eps=eps, norm=norm_name, version=version, device=device, seed=seed, **kwargs)
        if version == "custom":
            aa.apgd.n_restarts = 1
            aa.apgd.n_iter = cfg.apgd_iterations
            aa.apgd_targeted.n_iter = cfg.apgd_iterations
            aa.apgd_targeted.n_target_classes = cfg.target_classes
            aa.fab.n_target_classes = cfg.target_classes
            aa.fab.n_restarts = 1
            aa.square.n_queries = cfg.square_queries
        aa.logger.setLevel(logging.WARNING)
        with contextlib.redirect_stdout(io.StringIO()):
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=cfg.batch_size)
    return x_adv.detach()
