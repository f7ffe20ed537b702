"""FGSM and PGD (L-inf / L2, random start, restarts) on the expected loss of a mixture."""

from __future__ import annotations

import torch

from doracle.attacks import ATTACKS
from doracle.attacks.base import project, random_start, steepest


@ATTACKS.register("pgd")
def pgd(mixture, x, y, *, eps, norm, spec, generator):
    """Projected gradient ascent on sum_i p_i CE(f_i(x + delta), y).

    Step size ``spec.rel_step_size * eps``; ``spec.restarts`` random restarts, keeping per example
    the restart with the lowest expected accuracy (then the highest loss). With one restart there
    is nothing to choose: its end point is returned without scoring it (two forward passes saved,
    which adversarial training's inner attack would otherwise pay every step).
    """
    alpha = spec.rel_step_size * eps
    best = x.clone()
    best_acc = torch.full((len(x),), float("inf"), device=x.device)
    best_loss = torch.full((len(x),), -float("inf"), device=x.device)
    for _ in range(spec.restarts):
        delta = random_start(x, eps, norm, generator) if spec.random_start else torch.zeros_like(x)
        for _ in range(spec.steps):
            delta.requires_grad_(True)
            loss = mixture.expected_loss(x + delta, y)
            (grad,) = torch.autograd.grad(loss.sum(), delta)
            delta = project(delta.detach() + alpha * steepest(grad, norm), x, eps, norm)
        if spec.restarts == 1:
            return (x + delta).detach()
        with torch.no_grad():
            xa = x + delta
            acc = mixture.expected_accuracy(xa, y)
            loss = mixture.expected_loss(xa, y)
            better = (acc < best_acc) | ((acc == best_acc) & (loss > best_loss))
            best = torch.where(better.view(-1, *[1] * (x.dim() - 1)), xa, best)  # no host sync
            best_acc = torch.where(better, acc, best_acc)
            best_loss = torch.where(better, loss, best_loss)
    return best


@ATTACKS.register("fgsm")
def fgsm(mixture, x, y, *, eps, norm, spec, generator):
    """One signed-gradient step of size ``rel_step_size * eps`` (from a random start if asked)."""
    return pgd(mixture, x, y, eps=eps, norm=norm, spec=spec.model_copy(update={"steps": 1, "restarts": 1}),
               generator=generator)
