"""The base class of defenses."""

from __future__ import annotations

import abc

import torch

from doracle.config import AttackSpec


class Defense(abc.ABC):
    """A training method. ``default_attack`` is its own training attack (None for ERM)."""

    name: str = ""
    default_attack: AttackSpec | None = None

    def __init__(self, eps: float, norm: str, attack: AttackSpec | None = None) -> None:
        self.eps, self.norm = eps, norm
        self.attack = attack or self.default_attack

    @abc.abstractmethod
    def loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The scalar training loss on one batch (model in train mode)."""
