"""A mixed strategy of classifiers: members and probabilities, with exact expectations."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


@contextlib.contextmanager
def eval_mode(models: Sequence[nn.Module]):
    """Put ``models`` in eval mode and restore the mode of every module inside them afterwards.

    Each submodule gets its own recorded mode back: restoring only the outer module with
    ``.train(mode)`` would overwrite its members' modes (a wrapper built in train mode would put
    eval-mode members back in train mode, and BatchNorm would then update its running statistics).
    """
    modes = [(sub, sub.training) for m in models for sub in m.modules()]
    try:
        for m in models:
            m.eval()
        yield
    finally:
        for sub, mode in modes:
            sub.training = mode


class Mixture:
    """Members f_i played with probability p_i. A single model is a mixture of one."""

    def __init__(self, models: Sequence[nn.Module], probs=None) -> None:
        if not models:
            raise ValueError("a mixture needs at least one member")
        self.models = list(models)
        p = torch.ones(len(models)) if probs is None else torch.as_tensor(probs, dtype=torch.float32)
        if p.shape != (len(models),) or (p < 0).any() or p.sum() <= 0:
            raise ValueError(f"invalid mixture probabilities {p.tolist()}")
        self.probs = (p / p.sum()).tolist()

    def support(self, tol: float = 1e-9) -> Mixture:
        keep = [i for i, p in enumerate(self.probs) if p > tol]
        return Mixture([self.models[i] for i in keep], [self.probs[i] for i in keep])

    def expected_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example sum_i p_i CE(f_i(x), y)."""
        return sum(p * F.cross_entropy(m(x), y, reduction="none")
                   for m, p in zip(self.models, self.probs, strict=True) if p > 0)

    @torch.no_grad()
    def expected_accuracy(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per-example sum_i p_i 1[f_i(x) = y]: the exact expectation, never a sampled draw."""
        return sum(p * (m(x).argmax(1) == y).float()
                   for m, p in zip(self.models, self.probs, strict=True) if p > 0)
