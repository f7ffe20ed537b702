"""Generators and discriminators of the GAN game (DO-GAN, issue 12), registered with timm (doracle.models.entrypoints).

Contract (the GAN counterpart of the classifiers' RobustBench contract):

- a **generator** maps latents ``z`` of shape ``(N, latent_dim)`` to images in [0, 1] of shape
  ``(N, in_chans, img_size, img_size)``; it exposes ``latent_dim`` and ``img_shape``;
- a **discriminator** maps images in [0, 1] to one logit per image, shape ``(N,)``
  (``D(x) = sigmoid(logit)`` is the probability that ``x`` is real); the [0, 1] -> [-1, 1]
  shift happens inside, as a classifier's normalisation does.

Models (``timm.create_model(name, latent_dim=100, img_size=28, in_chans=1, spectral_norm=False,
width=...)``):

- ``doracle_gen_mlp`` / ``doracle_disc_mlp``: fully connected nets with LeakyReLU(0.2) (option
  ``activation``), the
  vanilla GAN of Goodfellow et al. 2014 as the DO-GAN authors' MNIST prototype uses it. The
  generator's hidden widths double from ``width`` (128, 256, 512 by default) and it ends in a
  sigmoid; the discriminator's halve down to ``width`` (512, 256).
- ``doracle_gen_dcgan`` / ``doracle_disc_dcgan``: DCGAN (Radford, Metz & Chintala, ICLR 2016):
  the generator projects ``z`` to a ``s0 x s0`` map and doubles the resolution with 4x4 stride-2
  transposed convolutions, BatchNorm + ReLU between them, tanh at the end (rescaled to
  [0, 1] as ``(tanh + 1) / 2``); the discriminator mirrors it with 4x4 stride-2 convolutions,
  LeakyReLU(0.2), BatchNorm on every layer but the first, and a linear head. Weights are drawn
  as in the paper: N(0, 0.02), BatchNorm scale N(1, 0.02), biases 0. ``img_size = s0 * 2**k``
  with the largest ``k`` that leaves ``s0 >= 4``: 8 = 4*2 (digits), 28 = 7*4 (MNIST),
  32 = 4*8 (CIFAR-10), 64 = 4*16 (TinyImageNet).

``spectral_norm=True`` wraps every linear / (transposed) convolution weight in
``torch.nn.utils.parametrizations.spectral_norm`` (Miyato et al. 2018; the power-iteration
vectors are buffers, saved with the weights). A discriminator with spectral norm has no
BatchNorm unless ``batch_norm=True`` is given (the SN-GAN discriminator has none).

Every weight is drawn from torch's global generator in a fixed order: same seed, same bytes.
The authors' training settings (not used here, for the oracles to come): Adam lr 1e-4
(discriminator 2e-4 in the warm-up), betas (0.5, 0.999), batch 64, latent 100.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations

from doracle.models import ARCH_OPTIONS
from doracle.models.entrypoints import entrypoint
from doracle.models.small import make_activation


def pyramid(img_size: int) -> tuple[int, int]:
    """``(s0, k)`` with ``img_size = s0 * 2**k``, ``k >= 1`` the largest that keeps ``s0 >= 4``."""
    if img_size < 8 or img_size % 2:
        raise ValueError(f"DCGAN img_size must be s0 * 2**k with s0 >= 4 and k >= 1 (8, 28, 32, 64, ...); "
                         f"got {img_size}")
    k = 1
    while img_size % 2 ** (k + 1) == 0 and img_size // 2 ** (k + 1) >= 4:
        k += 1
    return img_size // 2**k, k


def apply_spectral_norm(module: nn.Module) -> nn.Module:
    """Parametrize the weight of every linear and (transposed) convolution in ``module``."""
    for m in list(module.modules()):
        if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            parametrizations.spectral_norm(m)  # dim 1 for transposed convolutions (torch's default)
    return module


def dcgan_init(module: nn.Module) -> None:
    """Radford et al.'s initialisation: weights N(0, 0.02), BatchNorm scale N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear | nn.Conv2d | nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class MLPGenerator(nn.Module):
    def __init__(self, latent_dim=100, img_size=28, in_chans=1, width=128, depth=3, activation="leaky_relu"):
        super().__init__()
        self.latent_dim, self.img_shape = latent_dim, (in_chans, img_size, img_size)
        layers: list[nn.Module] = []
        d = latent_dim
        for i in range(depth):
            layers += [nn.Linear(d, width * 2**i), make_activation(activation)]
            d = width * 2**i
        layers.append(nn.Linear(d, in_chans * img_size * img_size))
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return torch.sigmoid(self.net(z)).view(-1, *self.img_shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, img_size=28, in_chans=1, width=256, depth=2, activation="leaky_relu"):
        super().__init__()
        self.img_shape = (in_chans, img_size, img_size)
        layers: list[nn.Module] = [nn.Flatten()]
        d = in_chans * img_size * img_size
        for i in reversed(range(depth)):
            layers += [nn.Linear(d, width * 2**i), make_activation(activation)]
            d = width * 2**i
        layers.append(nn.Linear(d, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x * 2 - 1).squeeze(1)


class DCGANGenerator(nn.Module):
    def __init__(self, latent_dim=100, img_size=32, in_chans=3, width=64):
        super().__init__()
        self.latent_dim, self.img_shape = latent_dim, (in_chans, img_size, img_size)
        s0, k = pyramid(img_size)
        c = width * 2 ** (k - 1)
        layers: list[nn.Module] = [nn.Linear(latent_dim, c * s0 * s0, bias=False), nn.Unflatten(1, (c, s0, s0)),
                                   nn.BatchNorm2d(c), nn.ReLU()]
        for _ in range(k - 1):
            layers += [nn.ConvTranspose2d(c, c // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(c // 2), nn.ReLU()]
            c //= 2
        layers.append(nn.ConvTranspose2d(c, in_chans, 4, 2, 1))
        self.net = nn.Sequential(*layers)
        dcgan_init(self)

    def forward(self, z):
        return (torch.tanh(self.net(z)) + 1) / 2


class DCGANDiscriminator(nn.Module):
    def __init__(self, img_size=32, in_chans=3, width=64, batch_norm=True):
        super().__init__()
        self.img_shape = (in_chans, img_size, img_size)
        s0, k = pyramid(img_size)
        layers: list[nn.Module] = [nn.Conv2d(in_chans, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = width
        for _ in range(k - 1):
            layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=not batch_norm)]
            layers += [nn.BatchNorm2d(2 * c)] if batch_norm else []
            layers.append(nn.LeakyReLU(0.2))
            c *= 2
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c * s0 * s0, 1)
        dcgan_init(self)

    def forward(self, x):
        return self.head(self.features(x * 2 - 1).flatten(1)).squeeze(1)


def _build(name: str, cls, pretrained: bool, spectral_norm: bool, kwargs: dict, allowed: tuple[str, ...]):
    if pretrained:
        raise ValueError(f"{name} has no pretrained weights")
    model = cls(**{k: v for k, v in kwargs.items() if k in allowed})  # timm adds pretrained_cfg & co.
    return apply_spectral_norm(model) if spectral_norm else model


@entrypoint
def doracle_gen_mlp(pretrained=False, latent_dim=100, img_size=28, in_chans=1, spectral_norm=False, **kwargs):
    """MLP generator (vanilla GAN; the DO-GAN prototype's MNIST net). Options: width, depth, activation."""
    return _build("doracle_gen_mlp", MLPGenerator, pretrained, spectral_norm,
                  dict(kwargs, latent_dim=latent_dim, img_size=img_size, in_chans=in_chans),
                  ("latent_dim", "img_size", "in_chans", *ARCH_OPTIONS["doracle_gen_mlp"]))


@entrypoint
def doracle_disc_mlp(pretrained=False, img_size=28, in_chans=1, spectral_norm=False, **kwargs):
    """MLP discriminator (vanilla GAN). Options: width, depth, activation. ``latent_dim`` is accepted and ignored."""
    return _build("doracle_disc_mlp", MLPDiscriminator, pretrained, spectral_norm,
                  dict(kwargs, img_size=img_size, in_chans=in_chans), ("img_size", "in_chans", *ARCH_OPTIONS["doracle_disc_mlp"]))


@entrypoint
def doracle_gen_dcgan(pretrained=False, latent_dim=100, img_size=32, in_chans=3, spectral_norm=False, **kwargs):
    """DCGAN generator (Radford et al. 2016). Option: width (channels of the last hidden layer)."""
    return _build("doracle_gen_dcgan", DCGANGenerator, pretrained, spectral_norm,
                  dict(kwargs, latent_dim=latent_dim, img_size=img_size, in_chans=in_chans),
                  ("latent_dim", "img_size", "in_chans", *ARCH_OPTIONS["doracle_gen_dcgan"]))


@entrypoint
def doracle_disc_dcgan(pretrained=False, img_size=32, in_chans=3, spectral_norm=False, batch_norm=None, **kwargs):
    """DCGAN discriminator. Options: width, batch_norm (default: on unless spectral_norm)."""
    batch_norm = (not spectral_norm) if batch_norm is None else batch_norm
    return _build("doracle_disc_dcgan", DCGANDiscriminator, pretrained, spectral_norm,
                  dict(kwargs, img_size=img_size, in_chans=in_chans, batch_norm=batch_norm),
                  ("img_size", "in_chans", *ARCH_OPTIONS["doracle_disc_dcgan"]))
