"""The GAN game's training loops (DO-GAN, Aung et al. CVPR 2022): ordinary GAN training and the
two best-response oracles.

Pure functions on models and tensors (no artifacts, no params), like :mod:`doracle.games.gan.arithmetic`;
the GAN game's jobs call them with warm-started models and save what they return.

- :func:`train_gan`: simultaneous GAN training, as DCGAN trains: per batch one discriminator step,
  then (every ``n_critic``-th batch) one generator step. The double oracle's warm-up and the
  base-GAN baseline.
- :func:`train_pair`: the co-trained oracle (``gan.oracle: cotrained``, the DO-GAN authors'): a new
  generator and discriminator trained together as in :func:`train_gan`, each also against the other
  player's stored mixture, weighted by sigma (:func:`pair_d_loss`, :func:`pair_g_loss`).
- :func:`train_generator`: the frozen-opponent generator oracle (``gan.oracle: frozen``), a best
  response to the discriminator mixture ``sigma_D``.
- :func:`train_discriminator`: the frozen-opponent discriminator oracle, a best response to the
  generator mixture ``sigma_G`` (also the closing best response of both oracles).

**Losses.** With logits ``l = D(x)`` (``D = sigmoid(l)``) the discriminator minimises
``mean softplus(-l_real) + mean softplus(l_fake)``: binary cross-entropy with real -> 1 and
fake -> 0, which is ``-V(G, D)`` of :func:`~doracle.games.gan.arithmetic.payoff_cell` on the batch (the
discriminator maximises V). The generator minimises the non-saturating ``mean softplus(-l_fake) =
-mean log D(G(z))`` (Goodfellow et al. 2014's replacement for ``log(1 - D(G(z)))``, which has no
gradient while D still rejects every fake). Against a mixture the loss is the exact expectation
``sum_j p_j * loss_j``: every member sees the same latents (common random numbers, so the latent
stream does not depend on the mixture) and members with ``p_j <= 1e-12`` are not run at all.

**Opponents** are frozen while a best response trains: eval mode (BatchNorm's running statistics,
as payoff cells and the deployed mixture play them) and ``requires_grad`` off (no gradient for their
weights; the generator's gradient still flows through the discriminators); every submodule's mode
and every parameter's flag is restored afterwards. The trained models run in train mode and are
left in eval mode, as :func:`doracle.defenses.training.train` leaves a classifier. In
:func:`train_gan` each network runs in separate real and fake batches (BatchNorm statistics are
never mixed; DCGAN's practice), and a fake batch is generated once, for both steps.

**Batches.** An epoch is a seeded permutation of ``x_train`` cut in batches of ``batch_size``; a
trailing batch of fewer than 2 images is dropped (BatchNorm cannot normalise a single image in
train mode), a smaller last batch of 2 or more is used. Each fake batch has as many latents as the
real batch beside it. ``x_train`` may live on the CPU (each batch is gathered there and copied) or
on the models' device.

**Determinism.** All randomness comes from one CPU ``torch.Generator`` seeded with ``seed``, drawn
in a fixed order (per epoch: the permutation, then the epoch's latents; in
:func:`train_generator`: each chunk's latents) and copied to the models' device: the same models,
data and seed give the same bits on a CPU with the same thread count, and the same latents on
every device. The global RNG is never touched.

**No waiting.** The loops never wait for the device inside an epoch: the losses are summed there
and checked for non-finite values once per epoch (per chunk of ``loss_every`` steps in
:func:`train_generator`), raising :class:`~doracle.errors.TrainingDiverged` that names the player;
latents are copied once per epoch (chunk).

**Compute** is counted with :class:`~doracle.compute.PassCounter` over every network involved,
the frozen opponents included (generating a fake batch is a forward pass of the generator).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from doracle.compute import PassCounter
from doracle.errors import TrainingDiverged
from doracle.games.gan.arithmetic import _logits, validate_probs
from doracle.models.mixture import eval_mode
from doracle.runtime import module_device, optimizer_step, progress, to_device

#: members of a mixture with at most this probability are skipped (not run at all)
MIN_PROB = 1e-12


@dataclass(frozen=True)
class GanOptim:
    """Adam settings of both players (a fresh optimizer per call: only the weights carry over).
    The DO-GAN authors': lr 1e-4 (discriminator 2e-4 in the warm-up), betas (0.5, 0.999), batch 64."""

    batch_size: int = 64
    lr_generator: float = 1e-4
    lr_discriminator: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError(f"GanOptim.batch_size must be at least 2 (BatchNorm), got {self.batch_size}")
        if not (self.lr_generator > 0 and self.lr_discriminator > 0):
            raise ValueError(f"GanOptim learning rates must be positive, got {self.lr_generator}, "
                             f"{self.lr_discriminator}")

    def adam(self, model: nn.Module, player: str) -> torch.optim.Adam:
        return torch.optim.Adam(model.parameters(), lr=getattr(self, f"lr_{player}"), betas=self.betas)


@contextlib.contextmanager
def weights_frozen(models: Sequence[nn.Module]):
    """``requires_grad`` off for every parameter of ``models``, each flag restored afterwards
    (gradients still flow through the models to their inputs)."""
    flags = [(p, p.requires_grad) for m in models for p in m.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextlib.contextmanager
def frozen(models: Sequence[nn.Module]):
    """The opponents of a best response: eval mode and no weight gradients, both restored."""
    with eval_mode(models), weights_frozen(models):
        yield


def _unique(models: Sequence[nn.Module]) -> list[nn.Module]:
    """Each module once (a module listed twice would get its pass-counting hooks twice)."""
    return list({id(m): m for m in models}.values())


def _check_device(models: Sequence[nn.Module], player: str, device) -> None:
    for m in models:
        if module_device(m) != device:
            raise ValueError(f"every {player} must be on the trained model's device {device}; "
                             f"got one on {module_device(m)}")


def _support(models: Sequence[nn.Module], probs, player: str, device) -> tuple[list, list[float]]:
    """``([(member, p)] with p > MIN_PROB, all normalised probabilities)``; members on ``device``."""
    if not models:
        raise ValueError(f"a {player} mixture needs at least one member")
    p = validate_probs(probs, len(models)).tolist()
    _check_device(models, player, device)
    return [(m, q) for m, q in zip(models, p, strict=True) if q > MIN_PROB], p


def _latent_dim(generators: Sequence[nn.Module]) -> int:
    dims = {getattr(g, "latent_dim", None) for g in generators}
    if len(dims) != 1 or None in dims:
        raise ValueError(f"the generators' latent_dim must be set and equal; got {sorted(map(str, dims))}")
    return dims.pop()


def _spans(n: int, batch_size: int) -> list[tuple[int, int]]:
    """An epoch's batches as (start, stop); a trailing batch of fewer than 2 images is dropped."""
    spans = [(s, min(s + batch_size, n)) for s in range(0, n, batch_size) if min(s + batch_size, n) - s >= 2]
    if not spans:
        raise ValueError(f"GAN training needs at least 2 training images, got {n}")
    return spans


def _epoch(x: torch.Tensor, spans, gen: torch.Generator, latent_dim: int, device) -> Iterator:
    """One epoch's ``(real batch, latents)`` on ``device``: the permutation, then the latents."""
    perm = torch.randperm(len(x), generator=gen).to(x.device)
    z = to_device(torch.randn(spans[-1][1], latent_dim, generator=gen), device)
    for s, e in spans:
        yield to_device(x[perm[s:e]], device), z[s:e]


class _Losses:
    """Per-player loss sums kept on the device; :meth:`flush` is the one wait per epoch (chunk)."""

    def __init__(self, players: tuple[str, ...], device, optim: GanOptim, desc: str) -> None:
        dtype = torch.float32 if device.type == "mps" else torch.float64  # as a Python float, where possible
        self.sums = torch.zeros(len(players), dtype=dtype, device=device)
        self.players, self.optim, self.desc = players, optim, desc
        self.counts = [0] * len(players)
        self.history: dict[str, list[float]] = {"generator": [], "discriminator": []}

    def add(self, *losses: torch.Tensor) -> None:
        """One batch's losses, in the order of ``players``."""
        self.sums += torch.stack([loss.detach() for loss in losses])
        self.counts = [c + 1 for c in self.counts]

    def add_one(self, player: str, loss: torch.Tensor) -> None:
        """One step's loss of one player (the players step at different rates: ``n_critic``)."""
        k = self.players.index(player)
        self.sums[k] += loss.detach()
        self.counts[k] += 1

    def flush(self, where: str) -> None:
        """Append the means since the last flush; raise if a player's loss is not finite."""
        for player, total, count in zip(self.players, self.sums.tolist(), self.counts, strict=True):
            mean = total / max(count, 1)
            if not math.isfinite(mean):
                raise TrainingDiverged(
                    f"{self.desc}: the {player} loss became {mean} in {where} (lower the {player}'s learning "
                    f"rate, GanOptim.lr_{player} = {getattr(self.optim, f'lr_{player}')})")
            self.history[player].append(mean)
        self.sums.zero_()
        self.counts = [0] * len(self.players)


def _d_loss(discriminator: nn.Module, real: torch.Tensor, fakes, real_weight: float = 1.0) -> torch.Tensor:
    """``real_weight * mean softplus(-D(real)) + sum_i p_i mean softplus(D(fake_i))``: ``-V`` on the
    batch (``real_weight`` 1 and the ``p_i`` summing to 1); each batch run through D on its own."""
    real_term = F.softplus(-_logits(discriminator, real)).mean()
    return (real_term if real_weight == 1.0 else real_weight * real_term) + sum(
        p * F.softplus(_logits(discriminator, fake)).mean() for fake, p in fakes)


def _g_loss(fake: torch.Tensor, discriminators) -> torch.Tensor:
    """``sum_j p_j * mean softplus(-D_j(fake))``: the non-saturating generator loss against
    ``[(D_j, p_j)]``."""
    return sum(p * F.softplus(-_logits(d, fake)).mean() for d, p in discriminators)


def pair_d_loss(discriminator: nn.Module, real: torch.Tensor, fake: torch.Tensor, stored_fakes,
                weight: float) -> torch.Tensor:
    """The co-trained discriminator's loss on one batch:
    ``L_D(D'; G') + w * sum_i p_i L_D(D'; G_i)`` with ``L_D(D; G) = mean softplus(-D(x)) + mean
    softplus(D(G(z)))`` (``-V`` on the batch), i.e. ``(1 + w sum_i p_i) mean softplus(-D'(x)) + mean
    softplus(D'(fake)) + w sum_i p_i mean softplus(D'(fake_i))``. ``fake`` is G'(z) and
    ``stored_fakes`` ``[(G_i(z), p_i)]``, all detached; ``w = weight``."""
    mass = sum(p for _, p in stored_fakes)
    return _d_loss(discriminator, real, [(fake, 1.0), *((f, weight * p) for f, p in stored_fakes)],
                   real_weight=1.0 + weight * mass if weight and stored_fakes else 1.0)


def pair_g_loss(fake: torch.Tensor, discriminator: nn.Module, stored_discriminators, weight: float) -> torch.Tensor:
    """The co-trained generator's loss on one batch: ``L_G(G'; D') + w * sum_j q_j L_G(G'; D_j)`` with
    ``L_G(G; D) = mean softplus(-D(G(z)))`` (non-saturating), ``fake = G'(z)``, ``stored_discriminators``
    ``[(D_j, q_j)]``; the discriminators' weights get no gradient (the caller freezes them)."""
    loss = _g_loss(fake, [(discriminator, 1.0)])
    return loss + _g_loss(fake, [(d, weight * q) for d, q in stored_discriminators]) if weight and \
        stored_discriminators else loss


def train_gan(generator: nn.Module, discriminator: nn.Module, x_train: torch.Tensor, *, epochs: int,
              optim: GanOptim, seed: int, desc: str = "gan", n_critic: int = 1) -> dict:
    """Ordinary (simultaneous) GAN training of both players in place; returns the run's stats.

    Per batch: one discriminator step (real -> 1, ``G(z)`` -> 0, the fakes detached), then, on every
    ``n_critic``-th batch, one generator step with the non-saturating loss on the same fakes against
    the updated discriminator (whose weights get no gradient there). Used for the DO warm-up and
    for the base-GAN baseline. Stats: ``epochs``, ``batches_per_epoch``, ``n_critic``, ``updates``
    (optimizer steps per player), ``losses`` (per-epoch means per player), ``compute``,
    ``train_seconds``.
    """
    return train_pair(generator, discriminator, x_train, epochs=epochs, optim=optim, seed=seed, desc=desc,
                      n_critic=n_critic)


def train_pair(generator: nn.Module, discriminator: nn.Module, x_train: torch.Tensor, *, epochs: int,
               optim: GanOptim, seed: int, desc: str = "pair", n_critic: int = 1,
               generators: Sequence[nn.Module] = (), generator_probs=None,
               discriminators: Sequence[nn.Module] = (), discriminator_probs=None, weight: float = 0.0) -> dict:
    """The co-trained oracle (the DO-GAN authors' prototype, σ-weighted): a new pair (G', D') trained
    together as an ordinary GAN, G' also against the stored discriminators of sigma_D
    (``discriminators``, ``discriminator_probs``) and D' against the stored generators of sigma_G,
    each term weighted by its probability and by ``weight`` (:func:`pair_d_loss`,
    :func:`pair_g_loss`). Both new networks are trained in place; the stored ones are frozen (see
    the module's docstring) and members with probability <= 1e-12 are not run at all.

    Per batch: one D' step; on every ``n_critic``-th batch one G' step on the same fakes against
    the updated D' (its weights and the stored discriminators' frozen). Without stored opponents
    (or ``weight`` 0) this is :func:`train_gan`. Stats as :func:`train_gan`'s, plus ``weight`` and
    the stored opponents' ``probs`` when there are any.
    """
    if n_critic < 1:
        raise ValueError(f"n_critic must be at least 1, got {n_critic}")
    if weight < 0 or not math.isfinite(weight):
        raise ValueError(f"weight must be finite and >= 0, got {weight}")
    device = module_device(generator)
    _check_device([discriminator], "discriminator", device)
    stored_g, p_g = _support(generators, generator_probs, "generator", device) if generators else ([], [])
    stored_d, p_d = _support(discriminators, discriminator_probs, "discriminator", device) if discriminators \
        else ([], [])
    if not weight:
        stored_g, stored_d = [], []  # a zero weight: the stored opponents are not run at all
    latent_dim, spans = _latent_dim([generator, *(g for g, _ in stored_g)]), _spans(len(x_train), optim.batch_size)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    opt_g, opt_d = optim.adam(generator, "generator"), optim.adam(discriminator, "discriminator")
    losses = _Losses(("discriminator", "generator"), device, optim, desc)
    updates = {"generator": 0, "discriminator": 0}
    t0 = time.perf_counter()
    generator.train()
    discriminator.train()
    opponents = _unique([*(g for g, _ in stored_g), *(d for d, _ in stored_d)])
    with PassCounter(_unique([generator, discriminator, *opponents])) as counter, frozen(opponents):
        bar = progress(range(epochs), desc, unit="epoch")
        for epoch in bar:
            for b, (real, z) in enumerate(_epoch(x_train, spans, gen, latent_dim, device)):
                g_step = (b + 1) % n_critic == 0
                with torch.set_grad_enabled(g_step):
                    fake = generator(z)
                with torch.no_grad():
                    stored_fakes = [(g(z), p) for g, p in stored_g]
                opt_d.zero_grad(set_to_none=True)
                loss_d = pair_d_loss(discriminator, real, fake.detach(), stored_fakes, weight)
                loss_d.backward()
                optimizer_step(opt_d)
                updates["discriminator"] += 1
                losses.add_one("discriminator", loss_d)
                if not g_step:
                    continue
                opt_g.zero_grad(set_to_none=True)
                with weights_frozen([discriminator]):
                    loss_g = pair_g_loss(fake, discriminator, stored_d, weight)
                    loss_g.backward()
                optimizer_step(opt_g)
                updates["generator"] += 1
                losses.add_one("generator", loss_g)
            losses.flush(f"epoch {epoch + 1}")
            bar.set_postfix(d=f"{losses.history['discriminator'][-1]:.4f}", g=f"{losses.history['generator'][-1]:.4f}")
    generator.eval()
    discriminator.eval()
    stats = {"epochs": epochs, "batches_per_epoch": len(spans), "n_critic": n_critic, "updates": updates,
             "losses": losses.history, "compute": counter.to_json(), "train_seconds": time.perf_counter() - t0}
    if generators or discriminators:
        stats = {**stats, "weight": weight, "probs": {"generator": p_g, "discriminator": p_d}}
    return stats


def train_generator(generator: nn.Module, discriminators: Sequence[nn.Module], probs, *, steps: int,
                    optim: GanOptim, seed: int, desc: str = "generator", loss_every: int = 50) -> dict:
    """The generator's best response to the discriminator mixture ``(discriminators, probs)``,
    trained in place; returns the run's stats.

    ``steps`` Adam steps on ``batch_size`` latents each, minimising
    ``sum_j p_j * mean softplus(-D_j(G(z)))`` (each batch is generated once and scored by every
    member with ``p_j > 1e-12``; the members frozen, see the module's docstring). The losses are
    reported and checked per chunk of ``loss_every`` steps (the last chunk may be shorter): stats
    ``steps``, ``loss_every``, ``probs``, ``updates``, ``losses`` (``generator``: one mean per
    chunk; ``discriminator``: empty), ``compute``, ``train_seconds``.
    """
    if loss_every < 1:
        raise ValueError(f"loss_every must be at least 1, got {loss_every}")
    device = module_device(generator)
    members, p = _support(discriminators, probs, "discriminator", device)
    latent_dim, bs = _latent_dim([generator]), optim.batch_size
    gen = torch.Generator(device="cpu").manual_seed(seed)
    opt = optim.adam(generator, "generator")
    losses = _Losses(("generator",), device, optim, desc)
    t0 = time.perf_counter()
    generator.train()
    opponents = _unique(discriminators)
    with PassCounter([generator, *opponents]) as counter, frozen(opponents):
        bar = progress(range(steps), desc, unit="step")
        for step in bar:
            k = step % loss_every
            if k == 0:  # the chunk's latents, drawn and copied at once
                chunk = min(loss_every, steps - step)
                zs = to_device(torch.randn(chunk * bs, latent_dim, generator=gen), device).split(bs)
            fake = generator(zs[k])
            opt.zero_grad(set_to_none=True)
            loss = _g_loss(fake, members)
            loss.backward()
            optimizer_step(opt)
            losses.add(loss)
            if k + 1 == chunk:
                losses.flush(f"steps {step + 2 - chunk}-{step + 1}")
                bar.set_postfix(g=f"{losses.history['generator'][-1]:.4f}")
    generator.eval()
    return {"steps": steps, "loss_every": loss_every, "probs": p, "updates": {"generator": steps, "discriminator": 0},
            "losses": losses.history, "compute": counter.to_json(), "train_seconds": time.perf_counter() - t0}


def train_discriminator(discriminator: nn.Module, generators: Sequence[nn.Module], probs, x_train: torch.Tensor,
                        *, epochs: int, optim: GanOptim, seed: int, desc: str = "discriminator") -> dict:
    """The discriminator's best response to the generator mixture ``(generators, probs)``, trained
    in place; returns the run's stats.

    Per batch of real images, one Adam step on ``mean softplus(-D(x_real)) + sum_i p_i * mean
    softplus(D(G_i(z)))`` (one latent batch shared by the members with ``p_i > 1e-12``, each
    generated without gradients by its frozen member and run through D as its own batch). Stats:
    ``epochs``, ``batches_per_epoch``, ``probs``, ``updates``, ``losses`` (``discriminator``:
    per-epoch means; ``generator``: empty), ``compute``, ``train_seconds``.
    """
    device = module_device(discriminator)
    members, p = _support(generators, probs, "generator", device)
    latent_dim, spans = _latent_dim(generators), _spans(len(x_train), optim.batch_size)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    opt = optim.adam(discriminator, "discriminator")
    losses = _Losses(("discriminator",), device, optim, desc)
    t0 = time.perf_counter()
    discriminator.train()
    opponents = _unique(generators)
    with PassCounter([discriminator, *opponents]) as counter, frozen(opponents):
        bar = progress(range(epochs), desc, unit="epoch")
        for epoch in bar:
            for real, z in _epoch(x_train, spans, gen, latent_dim, device):
                with torch.no_grad():
                    fakes = [(g(z), q) for g, q in members]
                opt.zero_grad(set_to_none=True)
                loss = _d_loss(discriminator, real, fakes)
                loss.backward()
                optimizer_step(opt)
                losses.add(loss)
            losses.flush(f"epoch {epoch + 1}")
            bar.set_postfix(d=f"{losses.history['discriminator'][-1]:.4f}")
    discriminator.eval()
    return {"epochs": epochs, "batches_per_epoch": len(spans), "probs": p,
            "updates": {"generator": 0, "discriminator": epochs * len(spans)}, "losses": losses.history,
            "compute": counter.to_json(), "train_seconds": time.perf_counter() - t0}
