"""ARC: the attack of Dbouk & Shanbhag (ICML 2022, "Adversarial Vulnerability of Randomized
Ensembles") on a randomised ensemble, after their reference code (hsndbk4/ARC, ``attack.py``).

Expected-loss attacks over-credit mixtures: the gradient of sum_i p_i CE_i can point towards
fooling a steep, unlikely member while the likely ones stay correct. ARC works on the quantity that
matters, the mixture's exact expected accuracy A(x) = sum_i p_i 1[f_i(x) = y]:

    delta_min = random point of the eps-ball (random_start) or 0;  beta = rel_step_size * eps
    repeat spec.steps times:                                   # passes over the members
        delta_local = 0
        for each member i, in order of decreasing probability:
            linearise f_i at x + delta_min + delta_local around its *predicted* class m: for every
            j != m, zeta_j = |f_m - f_j| / ||grad(f_m - f_j)||_q (q the dual norm); keep the nearest j
            g = unit step towards that boundary (sign for L-inf, w / ||w||_2 for L2)
            step = beta, or for every member but the first, when the boundary is nearer than beta,
                   beta / (beta - zeta) * |zeta - <g_2, delta_local>| + rho   (rho = 0.05 eps), which
                   crosses member i's boundary without undoing the earlier members' progress
            candidate = delta_local + step * g, rescaled to norm exactly beta
            accept it when A(x + proj(delta_min + candidate)) <= the best so far (ties accepted)
        delta_min = proj(delta_min + delta_local) when that is no worse
    ``spec.restarts`` such runs (each from its own random start); per example the lowest A wins.

An example with A = 0 (every member wrong) is at the objective's minimum and leaves the loop with
the perturbation that got it there (the reference keeps moving it, accepting ties; A stays 0):
the attack's accuracies are the same, at the cost of the examples still standing.

Only what can be checked differs from the reference: the random start is scored like every other
point (the reference keeps the clean point's accuracy as the bar), and restarts are supported.
"""

from __future__ import annotations

import torch

from doracle.attacks import ATTACKS
from doracle.attacks.base import lp_norm, project, random_start

RHO = 0.05  # overshoot past a member's boundary, in units of eps (reference: 0.05 * epsilon)


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *[1] * (like.dim() - 1))


def _nearest_boundary(model, x: torch.Tensor, norm: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For ``model`` at ``x``: the linearised distance zeta to the nearest decision boundary of its
    predicted class, the unit step g towards it, and g_2 = -w / ||w||_q (for the step-size rule)."""
    x = x.detach().requires_grad_(True)
    out = model(x)
    k = out.shape[1]
    pred = out.argmax(1, keepdim=True)
    out_m = out.gather(1, pred).squeeze(1)
    zeta = torch.full((len(x),), float("inf"), device=x.device)
    g = torch.zeros_like(x)
    g2 = torch.zeros_like(x)
    q = 1 if norm == "linf" else 2
    for j in range(k):
        diff = out_m - out[:, j]  # >= 0: how far class j is behind the prediction
        (w,) = torch.autograd.grad(diff.sum(), x, retain_graph=j < k - 1)
        dual = w.flatten(1).norm(p=q, dim=1)
        z = diff.detach().abs() / (dual + 1e-10)
        z = torch.where(pred.squeeze(1) == j, torch.full_like(z, float("inf")), z)
        closer = z < zeta
        unit = -w / _view(dual + 1e-10, w)
        g = torch.where(_view(closer, x), -w.sign() if norm == "linf" else unit, g)
        g2 = torch.where(_view(closer, x), unit, g2)
        zeta = torch.where(closer, z, zeta)
    return zeta, g, g2


def _one_run(mixture, x, y, delta_min, *, eps: float, norm: str, beta: float, passes: int):
    order = sorted(range(len(mixture.models)), key=lambda i: -mixture.probs[i])
    order = [i for i in order if mixture.probs[i] > 0]
    p = float("inf") if norm == "linf" else 2.0
    best = mixture.expected_accuracy(x + delta_min, y)
    delta_min = delta_min.clone()
    for _ in range(passes):
        # an example every member already misclassifies (A = 0) is at the objective's minimum: it
        # keeps its perturbation and costs nothing more (AutoAttack also attacks only what is left)
        act = (best > 0).nonzero().squeeze(1)
        if len(act) == 0:
            break
        xa, ya, dm, best_a = x[act], y[act], delta_min[act], best[act]
        delta_local = torch.zeros_like(xa)
        best_local = best_a.clone()
        for rank, i in enumerate(order):
            zeta, g, g2 = _nearest_boundary(mixture.models[i], xa + dm + delta_local, norm)
            step = torch.full_like(zeta, beta)
            if rank > 0:
                dot = (g2 * delta_local).flatten(1).sum(1)
                corrected = beta / (beta - zeta + 1e-10) * (zeta - dot).abs() + RHO * eps
                step = torch.where(zeta < beta, corrected, step)
            cand = delta_local + _view(step, xa) * g
            cand = beta * cand / _view(lp_norm(cand, p) + 1e-10, cand)
            acc = mixture.expected_accuracy(xa + project(dm + cand, xa, eps, norm), ya)
            ok = acc <= best_local
            delta_local = torch.where(_view(ok, xa), cand, delta_local)
            best_local = torch.minimum(best_local, acc)
        d = project(dm + delta_local, xa, eps, norm)
        acc = mixture.expected_accuracy(xa + d, ya)
        ok = acc <= best_a
        delta_min[act] = torch.where(_view(ok, xa), d, dm)
        best[act] = torch.minimum(best_a, acc)
    return delta_min, best


@ATTACKS.register("arc")
def arc(mixture, x, y, *, eps, norm, spec, generator):
    """``spec.steps`` passes over the members, step ``rel_step_size * eps`` (the reference uses
    eps itself on CIFAR-10), ``spec.restarts`` runs, random start if ``spec.random_start``."""
    beta = spec.rel_step_size * eps
    best_delta = torch.zeros_like(x)
    best_acc = mixture.expected_accuracy(x, y)
    for _ in range(spec.restarts):
        start = random_start(x, eps, norm, generator) if spec.random_start else torch.zeros_like(x)
        delta, acc = _one_run(mixture, x, y, start, eps=eps, norm=norm, beta=beta, passes=spec.steps)
        better = acc <= best_acc  # ties accepted, as everywhere in ARC (the reference returns its delta)
        best_delta = torch.where(_view(better, x), delta, best_delta)
        best_acc = torch.where(better, acc, best_acc)
    return (x + best_delta).detach()
