"""Small classifiers for 8x8 (digits) and 28x28 (MNIST) inputs, registered with timm."""

from __future__ import annotations

import torch
from timm.models import register_model
from torch import nn


class Normalized(nn.Module):
    """(x - mean) / std inside the model, so attacks work in [0, 1] input space."""

    def __init__(self, inner: nn.Module, mean, std) -> None:
        super().__init__()
        self.inner = inner
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x):
        return self.inner((x - self.mean) / self.std)


class SmallCNN(nn.Module):
    def __init__(self, num_classes=10, in_chans=1, width=32, hidden=128):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * 16, hidden), nn.ReLU(),
                                  nn.Linear(hidden, num_classes))

    def forward(self, x):
        return self.head(self.features(x))


class MLP(nn.Module):
    def __init__(self, num_classes=10, in_features=64, hidden=256, depth=2):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        d = in_features
        for _ in range(depth):
            layers += [nn.Linear(d, hidden), nn.ReLU()]
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


@register_model
def doracle_cnn_small(pretrained=False, num_classes=10, in_chans=1, img_size=8, mean=None, std=None, **kwargs):
    """Two 3x3 conv layers + MLP head (about 0.3M parameters)."""
    if pretrained:
        raise ValueError("doracle_cnn_small has no pretrained weights")
    mean, std = _stats(in_chans, mean, std)
    return Normalized(SmallCNN(num_classes, in_chans, **_own(kwargs, ("width", "hidden"))), mean, std)


@register_model
def doracle_mlp(pretrained=False, num_classes=10, in_chans=1, img_size=8, mean=None, std=None, **kwargs):
    """A 2-hidden-layer MLP on flattened pixels."""
    if pretrained:
        raise ValueError("doracle_mlp has no pretrained weights")
    mean, std = _stats(in_chans, mean, std)
    return Normalized(MLP(num_classes, in_chans * img_size * img_size, **_own(kwargs, ("hidden", "depth"))), mean, std)
