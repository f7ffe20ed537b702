"""The batched driver every attack goes through, and shared projection helpers."""

from __future__ import annotations

import torch

from doracle.attacks import ATTACKS
from doracle.attacks.noise import KeyedNoise, normal, uniform
from doracle.config import AttackSpec
from doracle.models.mixture import Mixture, eval_mode
from doracle.runtime import module_device, to_device


def run_attack(spec: AttackSpec, mixture: Mixture, x: torch.Tensor, y: torch.Tensor, *, eps: float,
               norm: str = "linf", seed: int = 0, batch_size: int = 512,
               keys: torch.Tensor | None = None) -> torch.Tensor:
    """x_adv for the whole of ``x``, in batches, members in eval mode (their modes restored).

    Without ``keys`` one seeded generator serves the whole call. With ``keys`` (one integer per
    example, e.g. its index in the split) each example's randomness is keyed noise
    (:class:`~doracle.attacks.noise.KeyedNoise`): its perturbation does not depend on the batch it
    was computed in. Batches are moved to the members' device; the result is on ``x``'s.
    """
    fn = ATTACKS.get(spec.name)
    gen = torch.Generator(device="cpu").manual_seed(seed)
    device = module_device(mixture.models[0]) if mixture.models else x.device
    out = []
    with eval_mode(mixture.models):
        for s in range(0, len(x), batch_size):
            xb, yb = to_device(x[s:s + batch_size], device), to_device(y[s:s + batch_size], device)
            g = gen if keys is None else KeyedNoise(seed, keys[s:s + batch_size])
            out.append(fn(mixture, xb, yb, eps=eps, norm=norm, spec=spec, generator=g).detach().to(x.device))
    return torch.cat(out) if out else x.clone()


def lp_norm(v: torch.Tensor, p: float) -> torch.Tensor:
    """Per-example L-p norm of ``v`` (p = inf or 2), flattened over everything but the batch."""
    return v.flatten(1).norm(p=p, dim=1)


def steepest(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """The unit steepest-ascent direction of ``grad`` for the threat model: sign for L-inf,
    grad / ||grad||_2 for L2 (a sign step under L2 would be a step of norm sqrt(d))."""
    if norm == "linf":
        return grad.sign()
    return grad / lp_norm(grad, 2).clamp_min(1e-12).view(-1, *[1] * (grad.dim() - 1))


def project(delta: torch.Tensor, x: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    """Project ``delta`` onto the eps-ball of ``norm`` and so that x + delta lies in [0, 1]."""
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        n = delta.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, *[1] * (delta.dim() - 1))
        delta = delta * torch.clamp(eps / n, max=1.0)
    return (x + delta).clamp(0.0, 1.0) - x


def random_start(x: torch.Tensor, eps: float, norm: str, gen) -> torch.Tensor:
    """A uniform point of the eps-ball (``gen``: a torch.Generator or per-example KeyedNoise)."""
    if norm == "linf":
        d = (uniform(x.shape, gen, x.device) * 2 - 1) * eps
    else:
        d = normal(x.shape, gen, x.device)
        n = d.flatten(1).norm(dim=1).view(-1, *[1] * (x.dim() - 1))
        r = uniform((x.shape[0],), gen, x.device).pow(1.0 / x[0].numel()).view_as(n)
        d = d / n * r * eps
    return project(d, x, eps, norm)
