"""The Langevin sampler of DALE (Robey et al., NeurIPS 2021) as an attack.

x' = x + 0.001 N(0, I); K times: x' <- proj(x' + eta * sign(grad sum_i p_i log(1 - p_i,y(x'))) + noise)
with eta = ``rel_step_size * eps`` and Gaussian noise of std ``noise * eps`` (DALE's default
variant; the Laplacian variant adds the noise inside the sign). Unlike PGD it samples
perturbations from a Gibbs-like distribution rather than seeking one maximiser: used by the DALE
defense and, as an attacker strategy family, in the double oracle.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from doracle.attacks import ATTACKS
from doracle.attacks.base import project

NOISE = 0.01  # Langevin noise std, in units of eps (DALE code: small compared to the step)


def log_one_minus_py(mixture, x, y):
    """Per-example sum_i p_i log(1 - p_i,y(x)) (DALE's attack objective, numerically stable)."""
    total = 0
    for m, p in zip(mixture.models, mixture.probs, strict=True):
        if p <= 0:
            continue
        logp = F.log_softmax(m(x), 1)
        lpy = logp.gather(1, y[:, None]).squeeze(1)
        total = total + p * torch.log(-torch.expm1(lpy.clamp(max=-1e-7)))
    return total


def langevin(mixture, x, y, *, eps, norm, spec, generator, noise=NOISE, laplacian=False):
    eta = spec.rel_step_size * eps
    sigma = noise * eps
    x_adv = (x + 0.001 * torch.randn(x.shape, generator=generator).to(x.device)).clamp(0, 1)
    for _ in range(spec.steps):
        x_adv.requires_grad_(True)
        (g,) = torch.autograd.grad(log_one_minus_py(mixture, x_adv, y).sum(), x_adv)
        if laplacian:  # Laplace(0, sigma) by inverse CDF, from the seeded generator
            u = torch.rand(x.shape, generator=generator).to(x.device) - 0.5
            lap = -sigma * u.sign() * torch.log1p(-2 * u.abs())
            step = eta * (g + lap).sign()
        else:
            step = eta * g.sign() + sigma * torch.randn(x.shape, generator=generator).to(x.device)
        x_adv = x + project(x_adv.detach() + step - x, x, eps, norm)
    return x_adv.detach()


ATTACKS.register("langevin")(langevin)
