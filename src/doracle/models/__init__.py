"""Architectures registered in timm's model registry and built with ``timm.create_model``.

Classifiers (:func:`create`), contract RobustBench's: inputs in [0, 1], normalisation inside the
model, logits out. Generators and discriminators of the GAN game (:func:`create_gan`,
:mod:`doracle.models.gan`): latents to images in [0, 1]; images in [0, 1] to one logit each.
Importing this package imports neither torch nor timm. doracle's own architectures are built
without timm (:mod:`doracle.models.entrypoints`) and are registered in timm's registry whenever
timm is imported, so ``timm.create_model("doracle_cnn_small")`` works too; only another timm
model name makes :func:`create` import timm.
"""

from __future__ import annotations

from doracle.errors import ConfigError, did_you_mean

# doracle's own names, known without importing torch or timm (doracle.registry holds them, so
# that params validate in the lowest layer): re-exported here
from doracle.registry import (  # noqa: E402, F401
    ACTIVATION_NAMES,
    ARCH_OPTIONS,
    GAN_DISCRIMINATORS,
    GAN_GENERATORS,
    GAN_MODELS,
    OWN_MODELS,
)


def check_arch(name: str) -> None:
    if name in OWN_MODELS:
        return
    if name in GAN_MODELS:
        raise ConfigError(f"model.arch: {name!r} is a GAN model, not a classifier; doracle's classifiers: "
                          f"{', '.join(OWN_MODELS)}")
    # timm (about twice import torch): only for a timm architecture
    import timm

    if not timm.is_model(name):
        hint = did_you_mean(name, [*OWN_MODELS, *timm.list_models()])
        raise ConfigError(f"model.arch: unknown model {name!r}; {hint}doracle's models: {', '.join(OWN_MODELS)} "
                          f"(any timm model name also works)")


def create(name: str, *, num_classes: int, in_chans: int, img_size: int, mean, std, **options):
    """Build a classifier by registered name; ``mean``/``std`` are per-channel input statistics,
    ``options`` the family's architecture options (:data:`ARCH_OPTIONS`: width, hidden, ...)."""
    check_arch(name)
    if name in OWN_MODELS:
        # torch only (import timm is about twice import torch): the same function timm would call
        from doracle.models.entrypoints import all_entrypoints

        return all_entrypoints()[name](num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                                       mean=tuple(mean), std=tuple(std), **options)
    if options:
        raise ValueError(f"{name}: architecture options {sorted(options)} are for doracle's own models only")
    # Any other timm model: wrap it so that normalisation happens inside.
    import timm

    # torch: doracle's own architectures, built only when asked for
    from doracle.models import small

    inner = timm.create_model(name, num_classes=num_classes, in_chans=in_chans, pretrained=False)
    return small.Normalized(inner, mean, std)


def check_gan_arch(name: str, role: str) -> None:
    """``role`` is ``"generator"`` or ``"discriminator"``; unknown names list the valid ones."""
    valid = {"generator": GAN_GENERATORS, "discriminator": GAN_DISCRIMINATORS}[role]
    if name not in valid:
        raise ConfigError(f"unknown {role} {name!r}; {did_you_mean(name, valid)}doracle's {role}s: {', '.join(valid)}")


def create_gan(name: str, role: str, *, img_size: int, in_chans: int, latent_dim: int = 100,
               spectral_norm: bool = False, **options):
    """Build a generator or discriminator by registered name (``options``: width, depth, ...)."""
    from doracle.models.entrypoints import all_entrypoints  # torch only, as in create

    check_gan_arch(name, role)
    return all_entrypoints()[name](img_size=img_size, in_chans=in_chans, latent_dim=latent_dim,
                                   spectral_norm=spectral_norm, **options)


# doracle's architectures join timm's registry now if timm is loaded, else when it is imported
from doracle.models import entrypoints as _entrypoints  # noqa: E402 (after ARCH_OPTIONS: the model modules read it)

_entrypoints.install_timm_hook()
