"""The GAN game's params section: ``gan`` (the oracle, the budgets, the reference classifier, the
metrics)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import (
    Field,
    model_validator,
)

from doracle.config.base import PosInt, Strict

#: the top-level sections of the GAN game's params files only (config.load: partial files, complete keys)
SECTIONS = ("gan",)


class GanReference(Strict):
    """The classifier whose features and logits score generated images (FID, Inception-Score-style
    score, classes covered): trained on the same data by the ``train_reference`` job with
    ``training``'s optimiser settings."""

    arch: str = "doracle_cnn_small"
    epochs: PosInt = 6


class GanMetrics(Strict):
    samples: PosInt | None = None         # generated images per model; null = as many as the real images
    #                                       (every image outside the training split); a number caps both
    nearest_k: PosInt = 5                 # k of precision / recall / density / coverage
    is_split_size: Annotated[int, Field(ge=2)] = 100  # images per Inception-Score split (fixed, so the
    #                                       score does not move with the sample count)
    bootstrap: Annotated[int, Field(ge=0, le=100_000)] = 200  # resamples of real images and latents
    #                                       for FID's 95% interval and the paired comparisons; 0 = none
    min_class_share: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None  # a class counts as covered
    #                                       from this share of samples; null = half the uniform share
    inception: bool = False               # also FID / IS with torchvision's Inception-v3 weights (fetched on
    #                                       first use: clusters only; pip install -e ".[inception]")
    grid: PosInt = 64                     # images per sample grid in the report


class Gan(Strict):
    """The GAN game (``game: gan``): generator and discriminator families, optimiser and budgets."""

    generator: str = "doracle_gen_dcgan"
    discriminator: str = "doracle_disc_dcgan"
    latent_dim: PosInt = 100
    spectral_norm: bool = False
    batch_size: Annotated[int, Field(ge=2)] = 64  # BatchNorm needs two images a batch
    lr_generator: Annotated[float, Field(gt=0.0)] = 1e-4
    lr_discriminator: Annotated[float, Field(gt=0.0)] = 2e-4
    betas: tuple[Annotated[float, Field(ge=0.0, lt=1.0)], Annotated[float, Field(ge=0.0, lt=1.0)]] = (0.5, 0.999)
    warmup_epochs: Annotated[int, Field(ge=0)] = 5  # 0: DO starts from freshly initialised networks
    warmup_lr_discriminator: Annotated[float, Field(gt=0.0)] = 2e-4
    # cotrained (the DO-GAN authors'): each iteration trains a new (G', D') pair together, each also
    # against the other's stored mixture; frozen: each player's best response against frozen opponents
    oracle: Literal["cotrained", "frozen"] = "cotrained"
    pair_epochs: PosInt = 2               # per co-trained pair (epochs of the training split's batches)
    n_critic: PosInt = 1                  # discriminator steps per generator step (pairs, warm-up, base GAN)
    opponent_weight: Annotated[float, Field(ge=0.0, le=100.0)] = 0.1  # w: a pair's stored-mixture terms
    generator_epochs: PosInt = 5          # per generator best response (frozen oracle)
    discriminator_epochs: PosInt = 5      # per discriminator best response (frozen oracle; the closing one)
    warm_start: bool = True
    payoff_latents: Annotated[int, Field(ge=2)] = 2000
    reference: GanReference = Field(default_factory=GanReference)
    metrics: GanMetrics = Field(default_factory=GanMetrics)

    @model_validator(mode="after")
    def _samples(self):
        m = self.metrics
        if m.samples is not None and m.samples <= m.nearest_k:
            raise ValueError(f"metrics.samples ({m.samples}) must exceed metrics.nearest_k "
                             f"({m.nearest_k}): precision / recall use each sample's k-th nearest neighbour")
        if m.samples is not None and m.samples < m.is_split_size:
            raise ValueError(f"metrics.samples ({m.samples}) is fewer than metrics.is_split_size ({m.is_split_size}): "
                             "the IS-style score needs one split of that many images")
        return self
