"""Contract tests over the defense registry: a few steps on a tiny model, finite and decreasing loss."""

import pytest
import torch
from torch import nn

from doracle import config
from doracle.defenses import DEFENSES, make_defense
from doracle.defenses.training import train


@pytest.fixture
def toy_data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 1, 4, 4, generator=g)
    y = (x.flatten(1)[:, :8].sum(1) > x.flatten(1)[:, 8:].sum(1)).long()
    return x, y


@pytest.mark.parametrize("name", DEFENSES.names())
def test_defense_trains_without_nan_and_reduces_its_loss(name, toy_data):
    x, y = toy_data
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
    p = config.validate({"training": {"lr": 0.01}})
    stats = train(model, make_defense(name, p), x, y, p.training, epochs=8, seed=0)
    h = stats["loss_history"]
    assert all(torch.isfinite(torch.tensor(h)))
    assert h[-1] < h[0]


def test_opponent_perturbations_enter_the_loss(toy_data):
    x, y = toy_data
    p = config.validate({})
    d = make_defense("erm", p)
    nets = []
    for w in (0.0, 1.0):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
        opp = torch.stack([1 - x])  # one attacker strategy: a fixed perturbation of each input
        train(m, d, x, y, p.training, epochs=1, seed=0, opponents=opp, opponent_probs=[1.0], opponent_weight=w)
        nets.append(m[1].weight.detach().clone())
    assert not torch.allclose(nets[0], nets[1])
