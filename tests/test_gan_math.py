"""The GAN game's arithmetic: payoff cells (known answers, stability, bit-for-bit reproducibility),
fixed latents, and the deployed generator mixture (statistical test with fixed seeds)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from doracle import models
from doracle.games.gan.arithmetic import (
    MixtureSampler,
    PayoffCell,
    fixed_latents,
    payoff_cell,
    sample_mixture,
    validate_probs,
)
from project import ROOT


class ConstantD(nn.Module):
    """D(x) = sigmoid(c) for every image."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = nn.Parameter(torch.tensor(c))

    def forward(self, x):
        return self.c.expand(x.shape[0])


class SumD(nn.Module):
    """logit = k * (mean pixel - 1/2): a known per-image logit."""

    def __init__(self, k: float) -> None:
        super().__init__()
        self.k = k

    def forward(self, x):
        return self.k * (x.flatten(1).mean(1) - 0.5)


class ShiftG(nn.Module):
    """G(z) = sigmoid(z + b) as a 1x2x2 image (latent_dim 4), distinguishable per member."""

    latent_dim = 4

    def __init__(self, b: float) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.tensor(b))
        self.calls = 0

    def forward(self, z):
        self.calls += 1
        return torch.sigmoid(z + self.b).view(-1, 1, 2, 2)


def gan_pair(seed=0, img_size=8):
    torch.manual_seed(seed)
    g = models.create_gan("doracle_gen_dcgan", "generator", img_size=img_size, in_chans=1, latent_dim=16, width=8)
    d = models.create_gan("doracle_disc_dcgan", "discriminator", img_size=img_size, in_chans=1, width=8)
    return g, d


def real_images(n=100, img_size=8, seed=1):
    return torch.rand(n, 1, img_size, img_size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- payoff


@pytest.mark.parametrize("c", [0.0, 2.0, -3.0])
def test_constant_discriminator_known_value(c):
    """D = sigmoid(c) everywhere: V = log sigmoid(c) + log(1 - sigmoid(c)), no spread; c = 0 is the
    game's value at the optimum, -log 4."""
    cell = payoff_cell(ShiftG(0.0), ConstantD(c), real_images(10, 2), fixed_latents(0, 12, 4))
    s = 1 / (1 + math.exp(-c))
    assert isinstance(cell, PayoffCell)
    assert cell.value == pytest.approx(math.log(s) + math.log(1 - s), abs=1e-6)
    assert cell.stderr == pytest.approx(0.0, abs=1e-7) and cell.n == 22
    if c == 0:
        assert cell.value == pytest.approx(-math.log(4), abs=1e-7)


def test_value_and_standard_error_match_an_independent_computation():
    """numpy in float64 from the logits: the two terms' means, and sqrt(var1/n1 + var2/n2)."""
    x, z = real_images(37, 2), fixed_latents(3, 53, 4)  # unequal sizes, uneven batches
    d, g = SumD(6.0), ShiftG(0.7)
    cell = payoff_cell(g, d, x, z, batch_size=16)
    with torch.no_grad():
        l_real, l_fake = d(x).double().numpy(), d(g(z)).double().numpy()
    t1 = -np.log1p(np.exp(-l_real))  # log sigmoid
    t2 = -np.log1p(np.exp(l_fake))  # log(1 - sigmoid)
    assert cell.value == pytest.approx(t1.mean() + t2.mean(), rel=1e-6)
    se = math.sqrt(t1.var(ddof=1) / 37 + t2.var(ddof=1) / 53)
    assert cell.stderr == pytest.approx(se, rel=1e-5) and cell.stderr > 0
    assert cell.n == 90


def test_a_better_discriminator_earns_more():
    """Real images bright, fakes dark: a discriminator that says so has a higher payoff than one
    that says the opposite, and both are below 0 (a log-probability sum)."""
    x = 0.8 + 0.2 * real_images(50, 2)
    z = fixed_latents(0, 50, 4)
    g = ShiftG(-4.0)  # dark images
    good, bad = payoff_cell(g, SumD(8.0), x, z), payoff_cell(g, SumD(-8.0), x, z)
    assert bad.value < -math.log(4) < good.value < 0


def test_extreme_logits_stay_finite():
    """log(sigmoid(l)) underflows to -inf for l << 0 in float32; logsigmoid gives -|l|."""
    cell = payoff_cell(ShiftG(0.0), ConstantD(-200.0), real_images(4, 2), fixed_latents(0, 4, 4))
    assert math.isfinite(cell.value) and cell.value == pytest.approx(-200.0, rel=1e-6)
    naive = torch.log(torch.sigmoid(torch.tensor(-200.0)))
    assert torch.isinf(naive)  # what the stable form avoids


def test_payoff_restores_modes_and_changes_no_state():
    """Eval mode inside (BatchNorm's running statistics and spectral norm's vectors untouched);
    the callers' train mode comes back."""
    torch.manual_seed(0)
    g = models.create_gan("doracle_gen_dcgan", "generator", img_size=8, in_chans=1, latent_dim=16, width=8)
    d = models.create_gan("doracle_disc_dcgan", "discriminator", img_size=8, in_chans=1, width=8,
                          spectral_norm=True, batch_norm=True)
    g.train(), d.train()
    before = {k: v.clone() for m in (g, d) for k, v in m.state_dict().items()}
    payoff_cell(g, d, real_images(), fixed_latents(0, 100, 16), batch_size=32)
    after = {k: v for m in (g, d) for k, v in m.state_dict().items()}
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(s.training for m in (g, d) for s in m.modules())


def test_payoff_is_reproducible_bit_for_bit_and_nearly_batch_independent():
    g, d = gan_pair()
    x, z = real_images(), fixed_latents(0, 100, 16)
    a = payoff_cell(g, d, x, z, batch_size=32)
    b = payoff_cell(g, d, x, z, batch_size=32)
    g2, d2 = gan_pair()  # rebuilt from the same seed
    c = payoff_cell(g2, d2, x, z, batch_size=32)
    assert a == b == c  # floats compared exactly
    e = payoff_cell(g, d, x, z, batch_size=7)
    assert e.value == pytest.approx(a.value, abs=1e-6) and e.stderr == pytest.approx(a.stderr, rel=1e-5)
    g3, _ = gan_pair(seed=1)
    assert payoff_cell(g3, d, x, z).value != a.value


PROBE = """
import torch
torch.set_num_threads(1)
import hashlib, sys
sys.path.insert(0, {tests!r})
from test_gan_math import gan_pair, real_images
from doracle.games.gan.arithmetic import fixed_latents, payoff_cell
z = fixed_latents(123, 100, 16)
g, d = gan_pair()
c = payoff_cell(g, d, real_images(), z, batch_size=32)
print(hashlib.sha256(z.numpy().tobytes()).hexdigest(), c.value.hex(), c.stderr.hex())
"""


def test_latents_and_payoff_are_the_same_bytes_in_a_fresh_process():
    torch.set_num_threads(1)
    out = subprocess.run([sys.executable, "-c", PROBE.format(tests=str(ROOT / "tests"))], capture_output=True,
                         text=True, check=True).stdout.split()
    import hashlib

    z = fixed_latents(123, 100, 16)
    g, d = gan_pair()
    c = payoff_cell(g, d, real_images(), z, batch_size=32)
    assert out == [hashlib.sha256(z.numpy().tobytes()).hexdigest(), c.value.hex(), c.stderr.hex()]


def test_fixed_latents_leave_the_global_rng_alone():
    state = torch.get_rng_state()
    a = fixed_latents(5, 10, 3)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.shape == (10, 3) and a.dtype == torch.float32 and a.device.type == "cpu"
    assert torch.equal(a, fixed_latents(5, 10, 3)) and not torch.equal(a, fixed_latents(6, 10, 3))


def test_payoff_refuses_what_it_cannot_estimate():
    with pytest.raises(ValueError, match="at least 2 real images"):
        payoff_cell(ShiftG(0.0), ConstantD(0.0), real_images(1, 2), fixed_latents(0, 5, 4))

    class Wide(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 1)

    with pytest.raises(ValueError, match="one logit per image"):
        payoff_cell(ShiftG(0.0), Wide(), real_images(4, 2), fixed_latents(0, 4, 4))


# ---------------------------------------------------------------- the deployed generator mixture

N_DRAWS = 20_000


@pytest.mark.parametrize("probs", [
    [0.5, 0.3, 0.15, 0.05],
    [1, 1, 1],  # uniform, unnormalised (the prototype divided by zero here)
    [0.98, 0.01, 0.01],  # the least likely members still get their share (the prototype gave 0)
    [2, 0, 1, 0],  # zero-probability members are never drawn
], ids=["skewed", "uniform", "rare", "zeros"])
def test_each_member_gets_its_share(probs):
    sampler = MixtureSampler([ShiftG(float(i)) for i in range(len(probs))], probs)
    members, z = sampler.draw(N_DRAWS, seed=0)
    p = np.asarray(probs, dtype=float) / np.sum(probs)
    counts = np.bincount(members.numpy(), minlength=len(probs))
    assert counts.sum() == N_DRAWS and z.shape == (N_DRAWS, 4)
    assert (counts[p == 0] == 0).all()
    pos = p > 0
    # Pearson's chi-square goodness of fit over the members with positive probability (fixed seed,
    # so deterministic), and every share within 4 binomial standard errors
    assert stats.chisquare(counts[pos], N_DRAWS * p[pos]).pvalue > 1e-3
    se = np.sqrt(p * (1 - p) / N_DRAWS)
    assert (np.abs(counts / N_DRAWS - p) <= 4 * se + 1e-12).all(), (counts, p)


@pytest.mark.parametrize("k", [0, 2])
def test_one_hot_strategy_draws_only_its_member(k):
    probs = [0.0, 0.0, 0.0]
    probs[k] = 1.0
    members, _ = MixtureSampler([ShiftG(float(i)) for i in range(3)], probs).draw(1000, seed=3)
    assert (members == k).all()


def test_draws_are_seeded():
    s = MixtureSampler([ShiftG(0.0), ShiftG(1.0)], [0.5, 0.5])
    (m1, z1), (m2, z2), (m3, _) = s.draw(500, 1), s.draw(500, 1), s.draw(500, 2)
    assert torch.equal(m1, m2) and torch.equal(z1, z2) and not torch.equal(m1, m3)


def test_images_come_back_in_draw_order_each_member_running_once_per_batch():
    gens = [ShiftG(-3.0), ShiftG(0.0), ShiftG(3.0)]
    images, members = sample_mixture(gens, [0.2, 0.5, 0.3], n=50, seed=4, batch_size=16)
    sampler = MixtureSampler(gens, [0.2, 0.5, 0.3])
    m, z = sampler.draw(50, seed=4)
    assert torch.equal(members, m) and images.shape == (50, 1, 2, 2)
    with torch.no_grad():
        expected = torch.stack([gens[int(j)](z[k:k + 1])[0] for k, j in enumerate(m)])
    torch.testing.assert_close(images, expected, rtol=0, atol=1e-6)  # 1 ulp: vectorised vs one by one
    # 4 batches (16, 16, 16, 2): a member runs at most once in each
    for g in gens:
        g.calls = 0
    sampler.generate(m, z, batch_size=16)
    per_batch = [len(m[s:s + 16].unique()) for s in range(0, 50, 16)]
    assert sum(g.calls for g in gens) == sum(per_batch)
    assert all(g.calls <= 4 for g in gens)


def test_mixture_of_real_generators_in_eval_mode_restores_modes():
    torch.manual_seed(0)
    gens = [models.create_gan("doracle_gen_dcgan", "generator", img_size=8, in_chans=1, latent_dim=16, width=8)
            for _ in range(2)]
    before = [{k: v.clone() for k, v in g.state_dict().items()} for g in gens]
    images, members = sample_mixture(gens, [0.3, 0.7], n=40, seed=0, batch_size=16)
    assert images.shape == (40, 1, 8, 8) and images.min() >= 0 and images.max() <= 1
    assert set(members.tolist()) == {0, 1}
    assert all(g.training for g in gens)
    assert all(torch.equal(b[k], g.state_dict()[k]) for b, g in zip(before, gens, strict=True) for k in b)
    again, _ = sample_mixture(gens, [0.3, 0.7], n=40, seed=0, batch_size=16)
    assert torch.equal(images, again)


@pytest.mark.parametrize("probs,match", [
    ([1.1, -0.1], "non-negative"),
    ([0.5, float("nan")], "finite"),
    ([float("inf"), 1.0], "finite"),
    ([0.0, 0.0], "positive sum"),
    ([1.0], "1 given for 2 members"),
])
def test_invalid_probabilities_are_refused(probs, match):
    with pytest.raises(ValueError, match=match):
        MixtureSampler([ShiftG(0.0), ShiftG(1.0)], probs)


def test_probabilities_are_normalised_and_latent_dims_must_agree():
    assert validate_probs([2, 6], 2).tolist() == [0.25, 0.75]
    with pytest.raises(ValueError, match="at least one member"):
        MixtureSampler([], [])
    other = ShiftG(0.0)
    other.latent_dim = 5
    with pytest.raises(ValueError, match="latent_dim must be set and equal"):
        MixtureSampler([ShiftG(0.0), other], [1, 1])
