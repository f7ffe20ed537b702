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


def check_arch(name: str) -> None:
    if name in OWN_MODELS:
        return
    if name in GAN_MODELS:
        raise ConfigError(f"model.arch: {name!r} is a GAN model, not a classifier; doracle's classifiers: "
                          f"{', '.join(OWN_MODELS)}")
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
