"""Gradient-masking checks run before any attack (after AutoAttack's checks.py).

A model that outputs probabilities, has zero input gradients, or gives different outputs for the
same input makes gradient attacks look weaker than they are. Each check returns a result and,
when it fails, a warning that the metrics and the report carry.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from doracle.models.mixture import eval_mode


def run_checks(models, x: torch.Tensor, y: torch.Tensor, n: int = 128) -> dict:
    """Check every member of a mixture on (up to ``n``) examples."""
    x, y = x[:n], y[:n]
    out = {"members": [], "warnings": [], "stochastic": False}
    with eval_mode(models):
        for k, m in enumerate(models):
            with torch.no_grad():
                a, b = m(x), m(x)
            probs_like = bool(((a >= 0) & (a <= 1)).all() and torch.allclose(a.sum(1), a.new_ones(len(a)), atol=1e-3))
            deterministic = bool(torch.equal(a, b))
            xg = x.clone().requires_grad_(True)
            (g,) = torch.autograd.grad(F.cross_entropy(m(xg), y, reduction="sum"), xg)
            zero = float((g.flatten(1).abs().sum(1) == 0).float().mean())
            res = {"member": k, "outputs_logits": not probs_like, "deterministic": deterministic,
                   "zero_gradient_fraction": zero}
            out["members"].append(res)
            if probs_like:
                out["warnings"].append(f"member {k}: outputs look like probabilities, not logits "
                                       "(CE-based attacks are weakened)")
            if zero > 0:
                out["warnings"].append(f"member {k}: zero input gradient on {zero:.0%} of checked examples "
                                       "(possible gradient masking)")
            if not deterministic:
                out["stochastic"] = True
                out["warnings"].append(f"member {k}: forward pass is not deterministic; AutoAttack runs "
                                       "its 'rand' (EOT) version")
    return out
