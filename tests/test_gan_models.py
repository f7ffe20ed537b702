"""Contract tests for every GAN model in the registry, at the three image sizes of the data sets:
8x8 digits and 28x28 MNIST (1 channel), 32x32 CIFAR-10 (3 channels)."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn
from torch.nn.utils import parametrize

from doracle import models
from doracle.errors import ConfigError

SIZES = [(8, 1), (28, 1), (32, 3)]
LATENT = 100


def build(arch, img_size, in_chans, spectral_norm=False, **options):
    role = "generator" if arch in models.GAN_GENERATORS else "discriminator"
    return models.create_gan(arch, role, img_size=img_size, in_chans=in_chans, latent_dim=LATENT,
                             spectral_norm=spectral_norm, **options)


def weighted_layers(m: nn.Module) -> list[nn.Module]:
    return [s for s in m.modules() if isinstance(s, nn.Linear | nn.Conv2d | nn.ConvTranspose2d)]


def test_gan_models_are_registered_in_timm_and_kept_apart_from_classifiers():
    import doracle.models.gan  # noqa: F401
    import doracle.models.resnets  # noqa: F401
    import doracle.models.small  # noqa: F401

    assert set(models.GAN_MODELS) == set(models.GAN_GENERATORS) | set(models.GAN_DISCRIMINATORS)
    assert not set(models.GAN_MODELS) & set(models.OWN_MODELS)
    with pytest.raises(ConfigError, match="is a GAN model, not a classifier"):
        models.check_arch("doracle_gen_dcgan")
    with pytest.raises(ConfigError, match="unknown generator 'doracle_disc_mlp'.*doracle_gen_mlp"):
        models.create_gan("doracle_disc_mlp", "generator", img_size=8, in_chans=1)


@pytest.mark.parametrize("spectral_norm", [False, True], ids=["plain", "sn"])
@pytest.mark.parametrize("img_size,in_chans", SIZES, ids=[f"{s}px{c}ch" for s, c in SIZES])
@pytest.mark.parametrize("arch", models.GAN_MODELS)
def test_forward_backward_contract(arch, img_size, in_chans, spectral_norm):
    torch.manual_seed(0)
    m = build(arch, img_size, in_chans, spectral_norm).train()
    n = 4
    if arch in models.GAN_GENERATORS:
        assert m.latent_dim == LATENT and m.img_shape == (in_chans, img_size, img_size)
        z = torch.randn(n, LATENT, requires_grad=True)
        out = m(z)
        assert out.shape == (n, in_chans, img_size, img_size)
        assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
        # a discriminator-like loss on every pixel; the latent gets a gradient (latent-space search)
        torch.nn.functional.binary_cross_entropy(out, torch.rand_like(out)).backward()
        assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
        with torch.no_grad():  # saturation stays in range: huge latents, train and eval mode
            for mode in (True, False):
                far = m.train(mode)(1e3 * torch.randn(n, LATENT))
                assert torch.isfinite(far).all() and far.min() >= 0 and far.max() <= 1
    else:
        assert m.img_shape == (in_chans, img_size, img_size)
        x = torch.rand(n, in_chans, img_size, img_size, requires_grad=True)
        out = m(x)
        assert out.shape == (n,) and torch.isfinite(out).all()
        # the discriminator's loss on real (1) and fake (0) halves; the generator trains on dD/dx
        y = torch.tensor([1.0, 1.0, 0.0, 0.0])
        torch.nn.functional.binary_cross_entropy_with_logits(out, y).backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in m.named_parameters():  # every parameter is used and gets a finite gradient
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("arch", models.GAN_MODELS)
def test_spectral_norm_is_applied_when_asked(arch):
    plain, sn = build(arch, 28, 1), build(arch, 28, 1, spectral_norm=True)
    assert weighted_layers(plain) and not any(parametrize.is_parametrized(s) for s in plain.modules())
    layers = weighted_layers(sn)
    assert len(layers) == len(weighted_layers(plain))
    for layer in layers:
        assert parametrize.is_parametrized(layer, "weight")
        assert type(layer.parametrizations.weight[0]).__name__ == "_SpectralNorm"
    # the parametrization acts: the weight used is the trained one divided by its estimated
    # largest singular value (power iteration runs in train mode), so its spectral norm is ~1
    # (torch reshapes a transposed convolution's weight with dim 1 first)
    sn.train()
    for _ in range(30):
        sn(torch.randn(8, LATENT) if arch in models.GAN_GENERATORS else torch.rand(8, 1, 28, 28))
    for layer in layers:
        w = layer.weight.detach()
        w = (w.transpose(0, 1) if isinstance(layer, nn.ConvTranspose2d) else w).flatten(1)
        assert torch.linalg.matrix_norm(w, 2) == pytest.approx(1.0, abs=0.05)
        assert not torch.allclose(layer.weight, layer.parametrizations.weight.original)


def test_dcgan_discriminator_has_batchnorm_unless_spectral_norm():
    def bns(m):
        return sum(isinstance(s, nn.BatchNorm2d) for s in m.modules())

    assert bns(build("doracle_disc_dcgan", 32, 3)) == 2  # Radford et al.: all layers but the first
    assert bns(build("doracle_disc_dcgan", 32, 3, spectral_norm=True)) == 0  # SN-GAN: none
    assert bns(build("doracle_disc_dcgan", 32, 3, spectral_norm=True, batch_norm=True)) == 2


@pytest.mark.parametrize("img_size,s0,k", [(8, 4, 1), (28, 7, 2), (32, 4, 3), (64, 4, 4)])
def test_dcgan_pyramid(img_size, s0, k):
    from doracle.models.gan import pyramid

    assert pyramid(img_size) == (s0, k)
    g = build("doracle_gen_dcgan", img_size, 1, width=8)
    assert sum(isinstance(s, nn.ConvTranspose2d) for s in g.modules()) == k


@pytest.mark.parametrize("img_size", [6, 27])
def test_dcgan_refuses_sizes_it_cannot_build(img_size):
    with pytest.raises(ValueError, match="s0 \\* 2\\*\\*k"):
        build("doracle_gen_dcgan", img_size, 1)


@pytest.mark.parametrize("spectral_norm", [False, True], ids=["plain", "sn"])
@pytest.mark.parametrize("arch", models.GAN_MODELS)
def test_same_seed_same_weights_byte_for_byte(arch, spectral_norm):
    from safetensors.torch import save

    def weights(seed):
        torch.manual_seed(seed)
        return build(arch, 28, 1, spectral_norm).state_dict()  # spectral norm's u, v included

    a, b = weights(7), weights(7)
    assert list(a) == list(b) and save(a) == save(b)
    if spectral_norm:
        assert any(k.endswith("._u") for k in a)
    c = weights(8)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point() and a[k].numel() > 1)


def test_dcgan_init_follows_radford():
    torch.manual_seed(0)
    g = build("doracle_gen_dcgan", 32, 3)
    w = torch.cat([s.weight.flatten() for s in weighted_layers(g)])
    assert w.mean().abs() < 1e-3 and w.std().item() == pytest.approx(0.02, rel=0.02)
    bn = torch.cat([s.weight for s in g.modules() if isinstance(s, nn.BatchNorm2d)])
    assert bn.mean().item() == pytest.approx(1.0, abs=0.01)


@pytest.mark.parametrize("arch", models.GAN_MODELS)
def test_no_pretrained_weights(arch):
    with pytest.raises(ValueError, match=f"{arch} has no pretrained weights"):
        timm.create_model(arch, pretrained=True)
