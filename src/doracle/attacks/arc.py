"""ARC-style attack on a randomised ensemble (after Dbouk & Shanbhag, ICML 2022, "Adversarial
Vulnerability of Randomized Ensembles").

Expected-loss attacks over-credit mixtures: the gradient of sum_i p_i CE_i can point towards
fooling a steep, unlikely member while the likely ones stay correct. ARC works on the quantity that
matters, the mixture's exact expected accuracy sum_i p_i 1[f_i(x + delta) = y]:

    for each outer step, for each member i in order of decreasing probability:
        linearise f_i at x + delta and find its nearest decision boundary; two candidate steps towards
        it: the smallest one that crosses it (plus a small overshoot) and the largest one the
        eps-ball allows (robust to the curvature the linearisation misses); project onto the eps-ball
        and [0, 1]; keep, per example, the candidate with the lowest mixture expected accuracy, and
        only if that accuracy drops.

Members already fooled take no step. ``spec.steps`` is the number of outer passes over the members.
"""

from __future__ import annotations

import torch

from doracle.attacks import ATTACKS
from doracle.attacks.base import project

OVERSHOOT = 0.02


def _boundary_step(model, x, y, norm: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Towards ``model``'s nearest (linearised) decision boundary: the smallest crossing step and the
    unit-norm direction (sign for L-inf)."""
    x = x.detach().requires_grad_(True)
    logits = model(x)
    k = logits.shape[1]
    fy = logits.gather(1, y[:, None])
    best_dist = torch.full((len(x),), float("inf"), device=x.device)
    best_step = torch.zeros_like(x)
    best_dir = torch.zeros_like(x)
    for j in range(k):
        z = (logits[:, j:j + 1] - fy).squeeze(1)  # < 0 while f_i still predicts y over class j
        (w,) = torch.autograd.grad(z.sum(), x, retain_graph=j < k - 1)
        wf = w.flatten(1)
        dual = wf.abs().sum(1) if norm == "linf" else wf.norm(dim=1)
        dist = (-z.detach()).clamp_min(0) / dual.clamp_min(1e-12)
        mask = (y != j) & (dual > 1e-12) & (dist < best_dist)
        direction = w.sign() if norm == "linf" else w / dual.clamp_min(1e-12).view(-1, *[1] * (w.dim() - 1))
        step = (dist * (1 + OVERSHOOT) + 1e-6).view(-1, *[1] * (w.dim() - 1)) * direction
        best_step[mask] = step[mask]
        best_dir[mask] = direction[mask]
        best_dist = torch.where(mask, dist, best_dist)
    return best_step, best_dir


@ATTACKS.register("arc")
def arc(mixture, x, y, *, eps, norm, spec, generator):
    members = sorted(range(len(mixture.models)), key=lambda i: -mixture.probs[i])
    delta = torch.zeros_like(x)
    acc = mixture.expected_accuracy(x, y)
    for _ in range(spec.steps):
        for i in members:
            if mixture.probs[i] <= 0:
                continue
            m = mixture.models[i]
            with torch.no_grad():
                fooled = m(x + delta).argmax(1) != y
            step, direction = _boundary_step(m, x + delta, y, norm)
            cands = [project(delta + step, x, eps, norm), project(delta + 2 * eps * direction, x, eps, norm)]
            accs = [mixture.expected_accuracy(x + c, y) for c in cands]
            use_big = accs[1] < accs[0]
            cand = torch.where(use_big.view(-1, *[1] * (x.dim() - 1)), cands[1], cands[0])
            new_acc = torch.minimum(accs[0], accs[1])
            keep = (new_acc < acc) & ~fooled
            delta = torch.where(keep.view(-1, *[1] * (x.dim() - 1)), cand, delta)
            acc = torch.where(keep, new_acc, acc)
    return (x + delta).detach()
