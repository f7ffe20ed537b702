"""Small classifiers for 8x8 (digits) and 28x28 (MNIST) inputs, registered with timm (doracle.models.entrypoints)."""

from __future__ import annotations

import torch
from torch import nn

from doracle.models import ARCH_OPTIONS as OPTIONS
from doracle.models.entrypoints import entrypoint


class Normalized(nn.Module):
    """(x - mean) / std inside the model, so attacks work in [0, 1] input space."""

    def __init__(self, inner: nn.Module, mean, std) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return self.inner((x - self.mean) / self.std)


#: the ``activation`` option of the small classifiers (and the MLP GAN models): name -> module
ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh,
               "leaky_relu": lambda: nn.LeakyReLU(0.2)}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


class SmallCNN(nn.Module):
    """``depth`` 3x3 conv layers (``width``, then ``2 * width`` channels) + a one-hidden-layer head.
    The defaults (depth 2, relu) are the original network, module for module."""

    def __init__(self, num_classes=10, in_chans=1, width=32, hidden=128, depth=2, activation="relu"):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_chans
        for i in range(depth):
            out = width if i == 0 else 2 * width
            layers += [nn.Conv2d(c, out, 3, padding=1), make_activation(activation)]
            c = out
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(4))
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * 16, hidden), make_activation(activation),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class MLP(nn.Module):
    def __init__(self, num_classes=10, in_features=64, hidden=256, depth=2, activation="relu"):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d = in_features
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), make_activation(activation)]
            d = hidden
        layers.append(nn.Linear(d, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


def _own(kwargs: dict, allowed: tuple[str, ...]) -> dict:
    """The architecture options among ``kwargs`` (timm also passes pretrained_cfg and friends)."""
    return {k: v for k, v in kwargs.items() if k in allowed}


def _stats(in_chans, mean, std):
    mean = tuple(mean) if mean is not None else (0.5,) * in_chans
    std = tuple(std) if std is not None else (0.5,) * in_chans
    return mean, std


@entrypoint
def doracle_cnn_small(pretrained=False, num_classes=10, in_chans=1, img_size=8, mean=None, std=None, **kwargs):
    """Two 3x3 conv layers + MLP head (about 0.3M parameters). Options: width, hidden, depth, activation."""
    if pretrained:
        raise ValueError("doracle_cnn_small has no pretrained weights")
    mean, std = _stats(in_chans, mean, std)
    return Normalized(SmallCNN(num_classes, in_chans, **_own(kwargs, OPTIONS["doracle_cnn_small"])), mean, std)


@entrypoint
def doracle_mlp(pretrained=False, num_classes=10, in_chans=1, img_size=8, mean=None, std=None, **kwargs):
    """A 2-hidden-layer MLP on flattened pixels. Options: hidden, depth, activation."""
    if pretrained:
        raise ValueError("doracle_mlp has no pretrained weights")
    mean, std = _stats(in_chans, mean, std)
    return Normalized(MLP(num_classes, in_chans * img_size * img_size, **_own(kwargs, OPTIONS["doracle_mlp"])), mean, std)
