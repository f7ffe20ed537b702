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
        self.training = False  # a wrapper, never trained: it must not report (or restore) train mode

    def forward(self, x):
        return sum(p * m(x) for m, p in zip(self.members, self.probs, strict=True))


def build_autoattack(model: nn.Module, *, eps: float, norm: str, cfg, seed: int, stochastic: bool, device: str):
    """The AutoAttack object for ``cfg`` (params.evaluation.autoattack).

    For ``custom`` the APGD attacks are rebuilt with the configured iterations: APGD sizes its
    step-size schedule (checkpoints n_iter_2, n_iter_min, size_decr) in its constructor, so setting
    ``n_iter`` afterwards would keep a schedule sized for 100 iterations.
    """
    # pyautoattack: AutoAttack's evaluations only
    from pyautoattack import AutoAttack
    from pyautoattack.autopgd_base import APGDAttack, APGDAttack_targeted

    norm_name = {"linf": "Linf", "l2": "L2"}[norm]
    version = "rand" if stochastic else cfg.version
    kwargs = {"attacks": list(cfg.attacks)} if version == "custom" else {}
    aa = AutoAttack(model, eps=eps, norm=norm_name, version=version, device=device, seed=seed, **kwargs)
    if version == "custom":
        common = {"eps": eps, "norm": norm_name, "n_iter": cfg.apgd_iterations, "eot_iter": 1, "rho": 0.75,
                  "seed": seed, "device": device, "verbose": False, "logger": aa.logger}
        aa.apgd = APGDAttack(model, n_restarts=1, **common)
        aa.apgd_targeted = APGDAttack_targeted(model, n_restarts=1, n_target_classes=cfg.target_classes, **common)
        aa.fab.n_target_classes = cfg.target_classes
        aa.fab.n_restarts = 1
        aa.square.n_queries = cfg.square_queries
    aa.logger.setLevel(logging.WARNING)
    return aa


def run_autoattack(model: nn.Module, x, y, *, eps: float, norm: str, cfg, seed: int, stochastic: bool,
                   device: str) -> torch.Tensor:
    """x_adv from AutoAttack; ``cfg`` is params.evaluation.autoattack."""
    with eval_mode([model]):
        aa = build_autoattack(model, eps=eps, norm=norm, cfg=cfg, seed=seed, stochastic=stochastic, device=device)
        with contextlib.redirect_stdout(io.StringIO()):
            x_adv, _ = aa.run_standard_evaluation(x, y, batch_size=cfg.batch_size)
    return x_adv.detach()
