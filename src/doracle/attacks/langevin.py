"""The Langevin sampler of DALE (Robey et al., NeurIPS 2021) as an attack.

x' = x + 0.001 N(0, I); K times: x' <- proj(x' + eta * dir(grad sum_i p_i log(1 - p_i,y(x'))) + noise)
with eta = ``rel_step_size * eps``, dir the threat model's steepest direction (sign for L-inf, the
L2-normalised gradient for L2) and Gaussian noise of std ``noise * eps`` (DALE's default variant;
the Laplacian variant adds the noise inside dir). Unlike PGD it samples perturbations from a
Gibbs-like distribution rather than seeking one maximiser: used by the DALE defense and, as an
attacker strategy family, in the double oracle.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from doracle.attacks import ATTACKS
from doracle.attacks.base import project, steepest
from doracle.attacks.noise import normal, uniform

NOISE = 0.01  # Langevin noise std, in units of eps (DALE code: small compared to the step)


def log_one_minus_py(mixture, x, y):
    """Per-example sum_i p_i log(1 - p_i,y(x)), DALE's attack objective, computed exactly as
    log(1 - p_y) = logsumexp_{j != y} z_j - logsumexp_j z_j: no clamp, so the gradient stays
    non-zero even where the model is very confident."""
    total = 0
    for m, p in zip(mixture.models, mixture.probs, strict=True):
        if p <= 0:
            continue
        z = m(x)
        others = z.masked_fill(F.one_hot(y, z.shape[1]).bool(), float("-inf"))
        total = total + p * (torch.logsumexp(others, 1) - torch.logsumexp(z, 1))
    return total


def langevin(mixture, x, y, *, eps, norm, spec, generator, noise=NOISE, laplacian=False):
    eta = spec.rel_step_size * eps
    sigma = noise * eps
    x_adv = (x + 0.001 * normal(x.shape, generator, x.device)).clamp(0, 1)
    for _ in range(spec.steps):
        x_adv.requires_grad_(True)
        (g,) = torch.autograd.grad(log_one_minus_py(mixture, x_adv, y).sum(), x_adv)
        if laplacian:  # Laplace(0, sigma) by inverse CDF, from the seeded generator
            u = uniform(x.shape, generator, x.device) - 0.5
            lap = -sigma * u.sign() * torch.log1p(-2 * u.abs())
            step = eta * steepest(g + lap, norm)
        else:
            step = eta * steepest(g, norm) + sigma * normal(x.shape, generator, x.device)
        x_adv = x + project(x_adv.detach() + step - x, x, eps, norm)
    return x_adv.detach()


ATTACKS.register("langevin")(langevin)
