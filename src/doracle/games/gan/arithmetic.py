"""The GAN game's arithmetic (DO-GAN, issue 12): payoff cells, fixed latents, the deployed mixture.

Pure functions on models and tensors (no artifacts, no params); the GAN game's jobs (games/gan/jobs.py) call them.

**Payoff.** ``U[i, j] = V(G_j, D_i) = E_x log D_i(x) + E_z log(1 - D_i(G_j(z)))`` (rows: the
discriminators, who maximise it, as the engine's row player does), the value of
the GAN minimax game (Goodfellow et al. 2014), estimated on a fixed held-out real set and fixed
latents. The discriminator maximises it, the generator minimises it (at the game's optimum,
``p_G = p_data`` and ``D = 1/2``, ``V = -log 4``). With ``D = sigmoid(l)`` both terms come from
the logit stably: ``log D = logsigmoid(l)``, ``log(1 - D) = logsigmoid(-l)`` (finite where
``log(sigmoid(l))`` underflows to ``-inf``). The two terms are independent sample means over
``n1`` real images and ``n2`` latents, so the estimate's standard error is
``sqrt(var1 / n1 + var2 / n2)`` (sample variances, ``n - 1`` in the denominator). The DO-GAN
authors' prototype used 3 minibatches of 64 (noisy); here every cell uses the whole payoff set,
in eval mode (BatchNorm's running statistics, spectral norm's stored estimate), in fixed batches,
summed in float64: the same models and inputs give the same bits on a CPU with the same thread
count.

**Deployed generator.** :class:`MixtureSampler` plays the generator mixture ``sigma_G``: each
image draws its member from ``sigma_G`` with a seeded generator (inverse CDF, so a member of
probability 0 is never drawn and a uniform strategy is just uniform). The authors' prototype
min-max normalised the probabilities before sampling, which gives the least likely member zero
weight and divides by zero for a uniform strategy; probabilities here are only validated
(finite, non-negative, positive sum) and divided by their sum.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from doracle.models.mixture import eval_mode


class PayoffCell(NamedTuple):
    """One payoff entry: the estimate of V(G, D), its standard error, and the examples behind it
    (real images + generated images)."""

    value: float
    stderr: float
    n: int


def fixed_latents(seed: int, n: int, latent_dim: int) -> torch.Tensor:
    """``n`` standard normal latents (float32, CPU) from a CPU generator seeded with ``seed``: the
    same bytes on every run and device (move them where the generator is). The global RNG is
    left alone."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(n, latent_dim, generator=g)


def _logits(discriminator: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = discriminator(x)
    if out.shape != (x.shape[0],):
        raise ValueError(f"a discriminator returns one logit per image, shape ({x.shape[0]},); "
                         f"got {tuple(out.shape)}")
    return out


def _mean_var(t: torch.Tensor) -> tuple[float, float]:
    return float(t.mean()), float(t.var(correction=1))


@torch.no_grad()
def payoff_cell(generator: nn.Module, discriminator: nn.Module, x_real: torch.Tensor, z: torch.Tensor,
                *, batch_size: int = 256) -> PayoffCell:
    """``V(G, D) = mean log D(x_real) + mean log(1 - D(G(z)))`` with its standard error.

    ``x_real``: real images in [0, 1], on the models' device; ``z``: latents (e.g.
    :func:`fixed_latents`), moved to that device. Both models run in eval mode in batches of
    ``batch_size`` (the callers' modes are restored, nothing is updated).
    """
    n1, n2 = int(x_real.shape[0]), int(z.shape[0])
    if n1 < 2 or n2 < 2:
        raise ValueError(f"a payoff cell needs at least 2 real images and 2 latents (got {n1} and {n2}): "
                         "its standard error needs a sample variance")
    z = z.to(x_real.device)
    with eval_mode([generator, discriminator]):
        real = torch.cat([F.logsigmoid(_logits(discriminator, xb)).double() for xb in x_real.split(batch_size)])
        fake = torch.cat([F.logsigmoid(-_logits(discriminator, generator(zb))).double()
                          for zb in z.split(batch_size)])
    (m1, v1), (m2, v2) = _mean_var(real), _mean_var(fake)
    return PayoffCell(m1 + m2, (v1 / n1 + v2 / n2) ** 0.5, n1 + n2)


def validate_probs(probs, n_members: int) -> torch.Tensor:
    """``probs`` as a float64 tensor that sums to 1; a clear ``ValueError`` for anything else."""
    p = torch.as_tensor(probs, dtype=torch.float64).flatten().clone()
    if p.numel() != n_members:
        raise ValueError(f"mixture probabilities: {p.numel()} given for {n_members} members")
    if not torch.isfinite(p).all():
        raise ValueError(f"mixture probabilities must be finite: {p.tolist()}")
    if (p < 0).any():
        raise ValueError(f"mixture probabilities must be non-negative: {p.tolist()}")
    total = p.sum()
    if not total > 0:
        raise ValueError(f"mixture probabilities must have a positive sum: {p.tolist()}")
    return p / total


class MixtureSampler:
    """The deployed generator: a mixture of generators played with probabilities ``probs``
    (normalised; non-negative, finite, positive sum). Every member shares the latent dimension."""

    def __init__(self, generators: Sequence[nn.Module], probs) -> None:
        if not generators:
            raise ValueError("a generator mixture needs at least one member")
        self.generators = list(generators)
        self.probs = validate_probs(probs, len(self.generators))
        dims = {getattr(g, "latent_dim", None) for g in self.generators}
        if len(dims) != 1 or None in dims:
            raise ValueError(f"the members' latent_dim must be set and equal; got {sorted(map(str, dims))}")
        self.latent_dim: int = dims.pop()
        # inverse CDF in float64; the last member with positive probability ends it at exactly 1,
        # so u in [0, 1) never falls past it and members of probability 0 are never drawn
        cdf = self.probs.cumsum(0)
        cdf[int(torch.nonzero(self.probs).max()):] = 1.0
        self._cdf = cdf

    def draw(self, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(members, z)``: each image's member (int64, drawn from ``probs``) and latent, from one
        CPU generator seeded with ``seed`` (members first, then latents)."""
        g = torch.Generator(device="cpu").manual_seed(seed)
        u = torch.rand(n, dtype=torch.float64, generator=g)
        members = torch.searchsorted(self._cdf, u, right=True)
        return members, torch.randn(n, self.latent_dim, generator=g)

    @torch.no_grad()
    def generate(self, members: torch.Tensor, z: torch.Tensor, *, batch_size: int = 256,
                 device: torch.device | str | None = None) -> torch.Tensor:
        """Image ``k`` = ``generators[members[k]](z[k])``, in the order given. Within each batch
        the images are grouped by member, so each member runs once per batch; eval mode (the
        callers' modes are restored)."""
        members = torch.as_tensor(members, dtype=torch.long).cpu()
        if members.shape != (z.shape[0],) or (members < 0).any() or (members >= len(self.generators)).any():
            raise ValueError(f"members must be {z.shape[0]} indices in [0, {len(self.generators)})")
        if device is None:
            device = next(self.generators[0].parameters()).device
        out = None
        with eval_mode(self.generators):
            for start in range(0, len(members), batch_size):
                chunk = members[start:start + batch_size]
                for j in chunk.unique().tolist():
                    idx = torch.nonzero(chunk == j).squeeze(1) + start
                    images = self.generators[j](z[idx].to(device))
                    if out is None:
                        out = images.new_empty((len(members), *images.shape[1:]))
                    out[idx.to(out.device)] = images
        if out is None:
            raise ValueError("nothing to generate (n = 0)")
        return out

    def sample(self, n: int, seed: int, *, batch_size: int = 256,
               device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(images, members)``: ``n`` images of the mixture, in draw order, and the member behind
        each one. The same seed gives the same members and latents on every run."""
        members, z = self.draw(n, seed)
        return self.generate(members, z, batch_size=batch_size, device=device), members


def sample_mixture(generators: Sequence[nn.Module], probs, n: int, seed: int, *, batch_size: int = 256,
                   device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:meth:`MixtureSampler.sample` in one call: ``(images, members)``."""
    return MixtureSampler(generators, probs).sample(n, seed, batch_size=batch_size, device=device)
