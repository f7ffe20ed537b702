"""L2L: a learned attacker network (Jiang, Chen, Shi, Dai & Zhao, AISTATS 2021, "Learning to Defend
by Learning to Attack").

The attacker g sees [x, grad_x CE / max|grad_x CE|] (2C channels) and outputs delta = eps * tanh(.)
(projected for L2). Trained by Adam on -CE of the attacked classifier (mixture: expected CE).
The "2-step" variant applies g twice, the second time at x + delta_1 with the gradient there.

As an attack (``l2l`` in the registry) a fresh attacker is trained against the frozen mixture on
the data it attacks, for ``spec.steps`` Adam steps (learning rate :data:`ATTACK_LR`), then applied:
in the double oracle a trained perturbation network is an attacker pure strategy and this training
is its best response.
"""

from __future__ import annotations

import torch
from torch import nn

from doracle.attacks import ATTACKS
from doracle.attacks.base import project
from doracle.attacks.noise import KeyedNoise
from doracle.runtime import optimizer_step

ATTACK_LR = 1e-2  # Adam step of the attack's own (short) training; the defense uses attacker_lr


class AttackerNet(nn.Module):
    def __init__(self, in_chans: int, width: int = 32) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.net = nn.Sequential(
            nn.Conv2d(2 * in_chans, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
            nn.Conv2d(width, in_chans, 3, padding=1),
        )

    def forward(self, x, g):
        return torch.tanh(self.net(torch.cat([x, g], 1)))


def _input_grad(mixture, x, y):
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(mixture.expected_loss(x, y).sum(), x)
    return g / g.flatten(1).abs().amax(1).clamp_min(1e-12).view(-1, *[1] * (x.dim() - 1))


def perturb(net: AttackerNet, mixture, x, y, *, eps: float, norm: str, two_step: bool = False) -> torch.Tensor:
    """delta = g(x, normalised gradient) (twice for the 2-step variant), differentiable in g's weights."""
    delta = project(eps * net(x, _input_grad(mixture, x, y)), x, eps, norm)
    if two_step:
        x1 = (x + delta).detach()
        delta = project(delta + eps * net(x1, _input_grad(mixture, x1, y)), x, eps, norm)
    return delta


def new_attacker(in_chans: int, width: int, gen, device) -> AttackerNet:
    if isinstance(gen, KeyedNoise):
        seed = gen.integer_seed()
    else:
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AttackerNet(in_chans, width).to(device)


def train_attacker(net, mixture, x, y, *, eps, norm, steps, lr, two_step=False) -> list[float]:
    """Adam on -CE(mixture(x + g(x))); returns the attacked (expected) CE after each step."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        delta = perturb(net, mixture, x, y, eps=eps, norm=norm, two_step=two_step)
        loss = mixture.expected_loss(x + delta, y).mean()
        opt.zero_grad(set_to_none=True)
        (-loss).backward()
        optimizer_step(opt)
        history.append(float(loss.detach()))
    return history


@ATTACKS.register("l2l")
def l2l(mixture, x, y, *, eps, norm, spec, generator):
    # the mixture's weights must not be trained by the attacker's backward passes
    frozen = [(p, p.requires_grad) for m in mixture.models for p in m.parameters()]
    for p, _ in frozen:
        p.requires_grad_(False)
    try:
        net = new_attacker(x.shape[1], 32, generator, x.device)
        train_attacker(net, mixture, x, y, eps=eps, norm=norm, steps=spec.steps, lr=ATTACK_LR)
        delta = perturb(net, mixture, x, y, eps=eps, norm=norm).detach()
    finally:
        for p, flag in frozen:
            p.requires_grad_(flag)
    return (x + delta).detach()
