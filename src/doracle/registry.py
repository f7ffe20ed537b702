"""Register-by-name, create-by-factory (the timm / OpenSpiel habit).

Every family (meta-solvers, pruners, attacks, defenses, evaluators) is a :class:`Registry`.
An unknown name raises a :class:`~doracle.errors.ConfigError` that lists the valid names (and the
closest one: "did you mean");
registering a name twice warns and keeps the newer entry.

Built-in entries of the torch families are declared *lazily* (name -> module that registers it),
so params can be validated, and the light jobs can start, without importing torch; the module is
imported on first :meth:`Registry.get`.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from doracle.errors import ConfigError, unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str, lazy: dict[str, str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._lazy = dict(lazy or {})

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._entries:
                warnings.warn(f"{self.kind} {name!r} registered twice; the newer one wins", stacklevel=2)
            self._entries[name] = obj
            return obj

        return deco

    def get(self, name: str) -> T:
        if name not in self._entries and name in self._lazy:
            importlib.import_module(self._lazy[name])
            if name not in self._entries:
                raise RuntimeError(f"{self._lazy[name]} did not register {self.kind} {name!r}")
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(unknown_name(self.kind, name, self.names())) from None

    def names(self) -> list[str]:
        return sorted(set(self._entries) | set(self._lazy))

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._lazy

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())


# ------------------------------------------------------------------ names known without their modules
# The games (params ``game``), each a module that registers a doracle.games.Game: declared here, in
# the lowest layer, so that params (doracle.config) validate a game's name without importing the
# games; doracle.games re-exports it.
GAMES: Registry = Registry("game", lazy={"at": "doracle.games.at.game", "gan": "doracle.games.gan.game"})

# doracle's own architectures, registered with timm by doracle.models.small (digits/MNIST) and
# doracle.models.resnets (CIFAR scale) (a test checks the lists agree), known here so that params
# validate without importing timm.
OWN_MODELS = ("doracle_cnn_small", "doracle_mlp", "doracle_preact_resnet18", "doracle_wrn28_10",
              "doracle_wrn34_10")
# The GAN game's strategies, registered by doracle.models.gan; not classifiers (kept out of
# OWN_MODELS, and refused as model.arch).
GAN_GENERATORS = ("doracle_gen_mlp", "doracle_gen_dcgan")
GAN_DISCRIMINATORS = ("doracle_disc_mlp", "doracle_disc_dcgan")
GAN_MODELS = GAN_GENERATORS + GAN_DISCRIMINATORS
#: the architecture options each of doracle's families takes (``create(name, ..., **options)``,
#: ``create_gan``; known here so that an architecture search space validates without torch)
ARCH_OPTIONS = {
    "doracle_cnn_small": ("width", "hidden", "depth", "activation"),
    "doracle_mlp": ("hidden", "depth", "activation"),
    "doracle_preact_resnet18": (),
    "doracle_wrn28_10": (),
    "doracle_wrn34_10": (),
    "doracle_gen_mlp": ("width", "depth", "activation"),
    "doracle_disc_mlp": ("width", "depth", "activation"),
    "doracle_gen_dcgan": ("width",),
    "doracle_disc_dcgan": ("width", "batch_norm"),
}
#: values of the ``activation`` option (doracle.models.small.ACTIVATIONS; the MLP GAN models also
#: take leaky_relu, their default)
ACTIVATION_NAMES = ("relu", "gelu", "silu", "tanh", "leaky_relu")
