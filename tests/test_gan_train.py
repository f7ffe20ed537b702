"""The GAN game's training loops on 8x8 digits: bit-for-bit determinism, each oracle moves V(G, D)
its own way, the mixture expectation (exact weights, skipped members), pass and update counts,
divergence, and frozen opponents left as they were."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
from torch import nn

from doracle import models
from doracle.errors import TrainingDiverged
from doracle.games.gan.arithmetic import fixed_latents, payoff_cell
from doracle.games.gan.train import (
    GanOptim,
    pair_d_loss,
    pair_g_loss,
    train_discriminator,
    train_gan,
    train_generator,
    train_pair,
)

LATENT = 16
FAST = GanOptim(batch_size=32, lr_generator=1e-3, lr_discriminator=1e-3)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny nets gain nothing from intra-op threads, and on a busy CPU they lose a lot (and the
    bits depend on the thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) digits in [0, 1], shape (N, 1, 8, 8): 256 to train on, 200 to score."""
    from sklearn.datasets import load_digits

    x = torch.tensor(load_digits().images, dtype=torch.float32).div(16).unsqueeze(1)
    return x[:256], x[-200:]


def pair(kind: str = "mlp", seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """A small generator and discriminator (``kind``: mlp | dcgan), drawn from ``seed``."""
    torch.manual_seed(seed)
    g = models.create_gan(f"doracle_gen_{kind}", "generator", img_size=8, in_chans=1, latent_dim=LATENT, width=16)
    d = models.create_gan(f"doracle_disc_{kind}", "discriminator", img_size=8, in_chans=1, width=16)
    return g, d


def value(g, d, x_val) -> float:
    return payoff_cell(g, d, x_val, fixed_latents(0, 200, LATENT)).value


def same(a: nn.Module, b: nn.Module) -> bool:
    """Bit-identical weights and buffers."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


class NaND(nn.Module):
    """A discriminator whose logits are NaN."""

    def __init__(self, d: nn.Module) -> None:
        super().__init__()
        self.d = d

    def forward(self, x):
        return self.d(x) * float("nan")


# ---------------------------------------------------------------- determinism


@pytest.mark.parametrize("kind", ["mlp", "dcgan"])
def test_same_seed_same_bits_other_seed_other_weights(kind, digits):
    x, _ = digits
    runs = []
    for seed in (0, 0, 1):
        g, d = pair(kind)  # the same initial weights every time: only the training seed differs
        stats = train_gan(g, d, x, epochs=2, optim=FAST, seed=seed)
        runs.append((g, d, stats))
    (g0, d0, s0), (g1, d1, s1), (g2, d2, s2) = runs
    assert same(g0, g1) and same(d0, d1)
    assert s0["losses"] == s1["losses"] and s0["compute"] == s1["compute"]
    assert not same(g0, g2) and not same(d0, d2)
    assert s0["losses"] != s2["losses"]
    json.dumps(s0)  # the stats go into a JSON artifact as they are
    # the oracles too, and the global RNG is left alone
    rng = torch.get_rng_state()
    outs = []
    for _ in range(2):
        g, d = pair(kind)
        train_discriminator(d, [g], [1.0], x, epochs=1, optim=FAST, seed=3)
        train_generator(g, [d], [1.0], steps=5, optim=FAST, seed=4)
        outs.append((g, d))
    assert same(outs[0][0], outs[1][0]) and same(outs[0][1], outs[1][1])
    assert torch.equal(rng, torch.get_rng_state())


# ---------------------------------------------------------------- each oracle plays its side


@pytest.mark.parametrize("kind", ["mlp", "dcgan"])
def test_discriminator_best_response_raises_the_value(kind, digits):
    x, x_val = digits
    g, d = pair(kind)
    before = value(g, d, x_val)
    stats = train_discriminator(d, [g], [1.0], x, epochs=3, optim=FAST, seed=0)
    after = value(g, d, x_val)
    assert after > before + 0.2, (before, after)  # D maximises V (held-out reals, fixed latents)
    assert stats["losses"]["discriminator"][-1] < stats["losses"]["discriminator"][0]


@pytest.mark.parametrize("kind", ["mlp", "dcgan"])
def test_generator_best_response_lowers_the_value(kind, digits):
    x, x_val = digits
    g, d = pair(kind)
    train_discriminator(d, [g], [1.0], x, epochs=3, optim=FAST, seed=0)  # a D that tells them apart
    before = value(g, d, x_val)
    train_generator(g, [d], [1.0], steps=30, optim=FAST, seed=1)
    after = value(g, d, x_val)
    assert after < before - 0.1, (before, after)  # G minimises V against the fixed D


# ---------------------------------------------------------------- the mixture expectation


def test_generator_oracle_mixture_is_the_exact_expectation(digits):
    g, d1 = pair("mlp", 0)
    _, d2 = pair("mlp", 1)

    def run(ds, probs, steps=6):
        gc = copy.deepcopy(g)
        return gc, train_generator(gc, ds, probs, steps=steps, optim=FAST, seed=5, loss_every=1)

    g_alone, s_alone = run([d1], [1.0])
    g_pure, s_pure = run([d1, d2], [1.0, 0.0])  # the member of probability 0 is not run at all
    assert same(g_alone, g_pure)
    assert s_pure["compute"] == s_alone["compute"] and s_pure["losses"] == s_alone["losses"]
    # two copies of D1 at 1/2 each: the same game as D1 alone
    g_half, s_half = run([d1, copy.deepcopy(d1)], [0.5, 0.5])
    for a, b in zip(g_half.parameters(), g_alone.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert s_half["losses"]["generator"] == pytest.approx(s_alone["losses"]["generator"], rel=1e-5)
    # the first step's loss (same G, same latents) is sum_j p_j * loss_j
    first = {k: run(ds, p, steps=1)[1]["losses"]["generator"][0]
             for k, ds, p in (("1", [d1], [1]), ("2", [d2], [1]), ("mix", [d1, d2], [1, 3]))}
    assert first["mix"] == pytest.approx(0.25 * first["1"] + 0.75 * first["2"], rel=1e-6)


def test_discriminator_oracle_mixture_is_the_exact_expectation(digits):
    x, _ = digits
    g1, d = pair("mlp", 0)
    g2, _ = pair("mlp", 1)

    def run(gs, probs, x=x):
        dc = copy.deepcopy(d)
        return dc, train_discriminator(dc, gs, probs, x, epochs=2, optim=FAST, seed=6)

    d_alone, s_alone = run([g1], [1.0])
    d_pure, s_pure = run([g1, g2], [1.0, 0.0])
    assert same(d_alone, d_pure)
    assert s_pure["compute"] == s_alone["compute"] and s_pure["losses"] == s_alone["losses"]
    d_half, s_half = run([g1, copy.deepcopy(g1)], [0.5, 0.5])
    for a, b in zip(d_half.parameters(), d_alone.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert s_half["losses"]["discriminator"] == pytest.approx(s_alone["losses"]["discriminator"], rel=1e-5)
    # one batch, one step: the reported loss is taken before the update, so it is the mixture's
    # loss on the initial D: real term + sum_i p_i * fake term_i
    one = x[:32]
    first = {k: run(gs, p, x=one)[1]["losses"]["discriminator"][0]
             for k, gs, p in (("1", [g1], [1]), ("2", [g2], [1]), ("mix", [g1, g2], [1, 3]))}
    assert first["mix"] == pytest.approx(0.25 * first["1"] + 0.75 * first["2"], rel=1e-6)


# ---------------------------------------------------------------- counts


def test_pass_and_update_counts(digits):
    """65 images in batches of 32: two batches an epoch (a trailing single image is dropped).
    A pass is one example through one network."""
    x = digits[0][:65]
    b, batches, epochs = 32, 2, 3
    g, d = pair("dcgan")
    s = train_gan(g, d, x, epochs=epochs, optim=FAST, seed=0)
    n = epochs * batches * b  # examples per player
    assert s["batches_per_epoch"] == batches
    assert s["updates"] == {"generator": epochs * batches, "discriminator": epochs * batches}
    # G(z) once; D on real, detached fakes, fakes for G's step; backward: D twice in its step,
    # D and G in the generator's step
    assert s["compute"] == {"forward_passes": 4 * n, "backward_passes": 4 * n}
    assert len(s["losses"]["generator"]) == len(s["losses"]["discriminator"]) == epochs

    gens = [pair("mlp", i)[0] for i in range(3)]
    s = train_discriminator(d, gens, [0.5, 0.0, 0.5], x, epochs=epochs, optim=FAST, seed=0)
    assert s["updates"] == {"generator": 0, "discriminator": epochs * batches}
    # two members run (no grad through them); D on the real batch and both fake batches
    assert s["compute"] == {"forward_passes": 5 * n, "backward_passes": 3 * n}
    assert len(s["losses"]["discriminator"]) == epochs and s["losses"]["generator"] == []

    discs = [pair("mlp", i)[1] for i in range(2)]
    steps = 7
    s = train_generator(g, discs, [0.3, 0.7], steps=steps, optim=FAST, seed=0, loss_every=3)
    assert s["updates"] == {"generator": steps, "discriminator": 0}
    m = steps * b
    assert s["compute"] == {"forward_passes": 3 * m, "backward_passes": 3 * m}
    assert len(s["losses"]["generator"]) == 3 and s["losses"]["discriminator"] == []  # chunks 3 + 3 + 1
    assert s["probs"] == pytest.approx([0.3, 0.7])


# ---------------------------------------------------------------- divergence


def test_divergence_names_the_player(digits):
    x, _ = digits
    g, d = pair("mlp")
    with pytest.raises(TrainingDiverged, match="discriminator loss became nan in epoch 1.*lower"):
        train_discriminator(NaND(d), [g], [1.0], x, epochs=2, optim=FAST, seed=0)
    with pytest.raises(TrainingDiverged, match="generator loss became nan in steps 1-50.*lr_generator"):
        train_generator(g, [NaND(d)], [1.0], steps=60, optim=FAST, seed=0)
    huge = GanOptim(batch_size=32, lr_generator=1e30, lr_discriminator=1e30)
    with pytest.raises(TrainingDiverged, match="gan: the discriminator loss became (nan|inf).*lr_discriminator"):
        train_gan(g, d, x, epochs=2, optim=huge, seed=0)


# ---------------------------------------------------------------- frozen opponents


def snapshot(m: nn.Module):
    return (copy.deepcopy(m.state_dict()), [s.training for s in m.modules()],
            [p.requires_grad for p in m.parameters()])


def unusual(m: nn.Module) -> nn.Module:
    """Train mode with one submodule in eval mode and one frozen weight: states to restore."""
    m.train()
    list(m.modules())[2].eval()
    next(m.parameters()).requires_grad_(False)
    return m


def test_frozen_opponents_are_left_untouched(digits):
    x, _ = digits
    g, d = pair("dcgan")  # BatchNorm: running statistics would move in train mode
    opponents = [unusual(pair("dcgan", 1)[1]), pair("dcgan", 2)[1].eval()]
    before = [snapshot(o) for o in opponents]
    train_generator(g, opponents, [0.5, 0.5], steps=3, optim=FAST, seed=0)
    for o, (state, modes, flags) in zip(opponents, before, strict=True):
        assert all(torch.equal(v, state[k]) for k, v in o.state_dict().items())
        assert [s.training for s in o.modules()] == modes
        assert [p.requires_grad for p in o.parameters()] == flags
        assert all(p.grad is None for p in o.parameters())
    assert not g.training  # the trained model is left in eval mode

    gens = [unusual(pair("dcgan", 3)[0]), pair("dcgan", 4)[0].eval()]
    before = [snapshot(o) for o in gens]
    train_discriminator(d, gens, [0.5, 0.5], x, epochs=1, optim=FAST, seed=0)
    for o, (state, modes, flags) in zip(gens, before, strict=True):
        assert all(torch.equal(v, state[k]) for k, v in o.state_dict().items())
        assert [s.training for s in o.modules()] == modes
        assert [p.requires_grad for p in o.parameters()] == flags
        assert all(p.grad is None for p in o.parameters())
    assert not d.training

    # train_gan freezes the discriminator's weights for the generator's step only
    flags = [p.requires_grad for p in d.parameters()]
    train_gan(g, d, x, epochs=1, optim=FAST, seed=0)
    assert [p.requires_grad for p in d.parameters()] == flags


# ---------------------------------------------------------------- the co-trained oracle


class ConstD(nn.Module):
    """A discriminator whose logit is ``c`` for every image (plus 0 x the image: a graph to the input)."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(float(c)))

    def forward(self, x):
        return self.c + 0.0 * x.flatten(1).sum(1)


def sp(t: float) -> float:
    return math.log1p(math.exp(t))  # softplus


def test_the_cotrained_losses_weight_each_stored_opponent_by_sigma_and_w():
    """On constant-logit discriminators every term is known: softplus(-c) real / generator,
    softplus(c) fake."""
    real, fake = torch.zeros(4, 1, 8, 8), torch.zeros(4, 1, 8, 8)
    d_new = ConstD(0.3)
    stored_fakes = [(torch.zeros(4, 1, 8, 8), 0.25), (torch.zeros(4, 1, 8, 8), 0.75)]
    w = 0.6
    loss_d = pair_d_loss(d_new, real, fake, stored_fakes, w).item()
    # L_D(D'; G') + w sum_i p_i L_D(D'; G_i), L_D = softplus(-c) + softplus(c)
    assert loss_d == pytest.approx((sp(-0.3) + sp(0.3)) + w * (0.25 + 0.75) * (sp(-0.3) + sp(0.3)), rel=1e-6)
    assert pair_d_loss(d_new, real, fake, stored_fakes, 0.0).item() == pytest.approx(sp(-0.3) + sp(0.3), rel=1e-6)
    stored_d = [(ConstD(-1.0), 0.2), (ConstD(2.0), 0.8)]
    loss_g = pair_g_loss(fake, d_new, stored_d, w).item()
    assert loss_g == pytest.approx(sp(-0.3) + w * (0.2 * sp(1.0) + 0.8 * sp(-2.0)), rel=1e-6)
    assert pair_g_loss(fake, d_new, stored_d, 0.0).item() == pytest.approx(sp(-0.3), rel=1e-6)


def _hash(m: nn.Module) -> str:
    import hashlib

    return hashlib.sha256(b"".join(t.numpy().tobytes() for t in m.state_dict().values())).hexdigest()


def test_the_cotrained_pair_trains_both_new_networks_and_leaves_the_stored_ones_unchanged(digits):
    x, _ = digits
    g, d = pair("dcgan", 0)
    gens = [unusual(pair("dcgan", 1)[0]), pair("dcgan", 2)[0].eval()]
    discs = [pair("dcgan", 3)[1].eval(), pair("dcgan", 4)[1].eval()]
    before = [(_hash(m), snapshot(m)) for m in (*gens, *discs)]
    g0, d0 = _hash(g), _hash(d)
    s = train_pair(g, d, x, epochs=2, optim=FAST, seed=0, generators=gens, generator_probs=[0.4, 0.6],
                   discriminators=discs, discriminator_probs=[0.7, 0.3], weight=1.0)
    assert _hash(g) != g0 and _hash(d) != d0  # both new networks trained
    for m, (h, (_state, modes, flags)) in zip((*gens, *discs), before, strict=True):
        assert _hash(m) == h and [t.training for t in m.modules()] == modes
        assert [p.requires_grad for p in m.parameters()] == flags and all(p.grad is None for p in m.parameters())
    assert not g.training and not d.training
    batches = s["batches_per_epoch"]
    assert s["updates"] == {"generator": 2 * batches, "discriminator": 2 * batches}
    assert s["probs"] == {"generator": pytest.approx([0.4, 0.6]), "discriminator": pytest.approx([0.7, 0.3])}


def test_a_zero_probability_opponent_is_not_run_and_a_zero_weight_is_ordinary_gan_training(digits):
    x, _ = digits
    g, d = pair("mlp", 0)
    g1, d1 = pair("mlp", 1)
    g2, d2 = pair("mlp", 2)

    def run(**kw):
        gc, dc = copy.deepcopy(g), copy.deepcopy(d)
        return gc, dc, train_pair(gc, dc, x, epochs=2, optim=FAST, seed=3, **kw)

    a = run(generators=[g1], generator_probs=[1.0], discriminators=[d1], discriminator_probs=[1.0], weight=0.5)
    # NaN networks at probability 0: a member that ran, or reached a gradient, would make everything NaN
    b = run(generators=[g1, NaND(g2)], generator_probs=[1.0, 0.0], discriminators=[d1, NaND(d2)],
            discriminator_probs=[1.0, 0.0], weight=0.5)
    assert same(a[0], b[0]) and same(a[1], b[1])
    assert a[2]["compute"] == b[2]["compute"] and a[2]["losses"] == b[2]["losses"]
    plain_g, plain_d = copy.deepcopy(g), copy.deepcopy(d)
    plain = train_gan(plain_g, plain_d, x, epochs=2, optim=FAST, seed=3)
    zero = run(generators=[g1], generator_probs=[1.0], discriminators=[d1], discriminator_probs=[1.0], weight=0.0)
    assert same(zero[0], plain_g) and same(zero[1], plain_d)  # w = 0: the stored opponents play no part
    assert zero[2]["compute"] == plain["compute"]
    assert not (same(a[0], plain_g) and same(a[1], plain_d))  # w > 0: they do


def test_n_critic_steps_the_discriminator_that_many_times_per_generator_step(digits):
    x = digits[0][:128]  # 4 batches of 32
    g, d = pair("mlp")
    s = train_gan(g, d, x, epochs=3, optim=FAST, seed=0, n_critic=2)
    assert s["updates"] == {"discriminator": 12, "generator": 6} and s["n_critic"] == 2
    from doracle.games.gan.jobs import epoch_passes

    # what base_gan_passes divides by is what the loop counts
    assert sum(s["compute"].values()) == 3 * epoch_passes(128, 32, 2)
    s1 = train_gan(g, d, x[:100], epochs=2, optim=FAST, seed=0)
    assert sum(s1["compute"].values()) == 2 * epoch_passes(100, 32, 1)  # 3 batches of 32 and one of 4
    assert len(s["losses"]["generator"]) == len(s["losses"]["discriminator"]) == 3
    with pytest.raises(ValueError, match="n_critic must be at least 1"):
        train_gan(g, d, x, epochs=1, optim=FAST, seed=0, n_critic=0)


# ---------------------------------------------------------------- device


@pytest.mark.gpu
def test_runs_on_the_models_device_with_data_on_the_host(digits):
    x, x_val = digits
    g, d = (m.to("cuda") for m in pair("dcgan"))
    for data in (x, x.to("cuda")):
        stats = train_gan(g, d, data, epochs=1, optim=FAST, seed=0)
        train_discriminator(d, [g], [1.0], data, epochs=1, optim=FAST, seed=0)
        train_generator(g, [d], [1.0], steps=3, optim=FAST, seed=0)
        assert all(p.device.type == "cuda" for p in [*g.parameters(), *d.parameters()])
        assert all(map(math.isfinite, stats["losses"]["generator"]))
