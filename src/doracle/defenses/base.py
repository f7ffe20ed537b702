"""The base class of defenses."""

from __future__ import annotations

import abc

import torch

from doracle.config import AttackSpec
from doracle.defenses.options import OPTIONS, NoOptions


class Defense(abc.ABC):
    """A training method.

    ``default_attack`` is its own training attack (None for ERM); ``default_schedule`` its
    learning-rate schedule unless params override it; ``opts`` its validated options.
    """

    name: str = ""
    default_attack: AttackSpec | None = None
    default_schedule: str | None = None
    #: True when the adversary itself is trained alongside (L2L): the training loss is then not
    #: expected to decrease.
    adversary_learns: bool = False

    def __init__(self, eps: float, norm: str, attack: AttackSpec | None = None, options: dict | None = None,
                 lr_schedule: str | None = None) -> None:
        self.eps, self.norm = eps, norm
        self.attack = attack or self.default_attack
        self.opts = OPTIONS.get(self.name, NoOptions).model_validate(options or {})
        self.lr_schedule = lr_schedule or self.default_schedule

    @abc.abstractmethod
    def loss(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The scalar training loss on one batch (model in train mode)."""

    def make_optimizer(self, model: torch.nn.Module, base: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """The optimizer to train with (a wrapper around ``base`` for weight-perturbation methods)."""
        return base

    def state(self) -> dict:
        """The method's own training state (tensors and JSON values) for a resumable checkpoint."""
        return {}

    def load_state(self, state: dict) -> None:
        """Restore what :meth:`state` returned (nothing, for methods without state)."""
        if state:
            raise ValueError(f"{self.name}: unexpected training state {sorted(state)}")

    def stats(self) -> dict:
        """Method-specific training statistics recorded in the artifact (e.g. DALE's dual variable)."""
        return {}
