"""Contract tests over the attack registry, plus attack-specific checks on toy models."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from doracle.attacks import ATTACKS, run_attack
from doracle.config import AttackSpec
from doracle.models.mixture import Mixture

EPS = 8 / 255


def toy(seed, d=16, k=3):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(d, 32), nn.ReLU(), nn.Linear(32, k))


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.rand(64, 1, 4, 4, generator=g), torch.randint(0, 3, (64,), generator=g)


@pytest.mark.parametrize("name", ATTACKS.names())
@pytest.mark.parametrize("norm,eps", [("linf", EPS), ("l2", 0.5)])
@pytest.mark.parametrize("members", [1, 3])
def test_attack_contract(name, norm, eps, members, batch):
    x, y = batch
    models = [toy(s) for s in range(members)]
    models[0].train()  # the caller's modes must come back unchanged
    modes = [m.training for m in models]
    spec = AttackSpec(name=name, steps=5, rel_step_size=0.3, restarts=2)
    mix = Mixture(models, torch.rand(members) + 0.1)
    xa = run_attack(spec, mix, x, y, eps=eps, norm=norm, seed=1)
    d = (xa - x).flatten(1)
    bound = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
    assert bound.max() <= eps + 1e-6
    assert xa.min() >= 0 and xa.max() <= 1
    assert not torch.isnan(xa).any()
    assert [m.training for m in models] == modes
    # it works: the mixture's exact expected accuracy goes down
    assert mix.expected_accuracy(xa, y).mean() < mix.expected_accuracy(x, y).mean()


def test_pgd_loss_at_least_fgsm_loss(batch):
    x, y = batch
    m = toy(0)
    mix = Mixture([m])
    xf = run_attack(AttackSpec(name="fgsm", rel_step_size=1.0, random_start=False), mix, x, y, eps=EPS)
    xp = run_attack(AttackSpec(name="pgd", steps=20, rel_step_size=0.1, restarts=1), mix, x, y, eps=EPS)
    with torch.no_grad():
        lf, lp = F.cross_entropy(m(xf), y), F.cross_entropy(m(xp), y)
    assert lp >= lf - 1e-6


def test_attacks_are_deterministic_given_the_seed(batch):
    x, y = batch
    mix = Mixture([toy(0), toy(1)], [0.3, 0.7])
    spec = AttackSpec(name="pgd", steps=3, restarts=2)
    a = run_attack(spec, mix, x, y, eps=EPS, seed=5)
    b = run_attack(spec, mix, x, y, eps=EPS, seed=5)
    c = run_attack(spec, mix, x, y, eps=EPS, seed=6)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_mixture_expectation_is_exact():
    lin = [nn.Linear(2, 2, bias=False) for _ in range(2)]
    with torch.no_grad():
        lin[0].weight.copy_(torch.eye(2))        # predicts argmax(x)
        lin[1].weight.copy_(torch.eye(2).flip(0))  # predicts the other class
    mix = Mixture(lin, [0.25, 0.75])
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 0])
    assert mix.expected_accuracy(x, y).tolist() == [0.25, 0.75]


def test_expected_loss_pgd_beats_single_member_attack_on_the_mixture(batch):
    x, y = batch
    ms = [toy(0), toy(1)]
    mix = Mixture(ms, [0.5, 0.5])
    spec = AttackSpec(name="pgd", steps=10, rel_step_size=0.25)
    x_mix = run_attack(spec, mix, x, y, eps=0.3, seed=0)
    x_one = run_attack(spec, Mixture([ms[0]]), x, y, eps=0.3, seed=0)
    assert mix.expected_loss(x_mix, y).mean() >= mix.expected_loss(x_one, y).mean()
