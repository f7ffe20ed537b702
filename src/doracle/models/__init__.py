"""Architectures registered in timm's model registry and built with ``timm.create_model``.

Contract (RobustBench's): inputs in [0, 1], normalisation inside the model, logits out.
Importing this package does not import timm; :func:`create` does.
"""

from __future__ import annotations

from doracle.errors import ConfigError

# doracle's own architectures, registered with timm by doracle.models.small (digits/MNIST) and
# doracle.models.resnets (CIFAR scale) (a test checks the lists agree), known here so that params
# validate without importing timm.
OWN_MODELS = ("doracle_cnn_small", "doracle_mlp", "doracle_preact_resnet18", "doracle_wrn28_10",
              "doracle_wrn34_10")


def check_arch(name: str) -> None:
    if name in OWN_MODELS:
        return
    import timm

    if not timm.is_model(name):
        raise ConfigError(f"model.arch: unknown model {name!r}; doracle's models: {', '.join(OWN_MODELS)} "
                          f"(any timm model name also works)")


def create(name: str, *, num_classes: int, in_chans: int, img_size: int, mean, std):
    """Build a classifier by registered name; ``mean``/``std`` are per-channel input statistics."""
    import timm

    from doracle.models import resnets, small  # noqa: F401 (resnets: registers its models)

    check_arch(name)
    if name in OWN_MODELS:
        return timm.create_model(name, num_classes=num_classes, in_chans=in_chans, img_size=img_size,
                                 mean=tuple(mean), std=tuple(std))
    # Any other timm model: wrap it so that normalisation happens inside.
    inner = timm.create_model(name, num_classes=num_classes, in_chans=in_chans, pretrained=False)
    return small.Normalized(inner, mean, std)
