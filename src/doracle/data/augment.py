"""Training-batch augmentation on the batch's device: random crop (zero padding) and flip.

``crop``: pad every side by ``padding`` pixels and cut a random H x W window (per example);
``crop_flip``: the same and a horizontal flip with probability 1/2, the standard CIFAR-10 /
TinyImageNet augmentation of the adversarial-training literature (SVHN: crop only, digits would
not survive a flip). Offsets and flips come from the training job's seeded CPU generator, so a run
is reproducible; the pixels never leave the device. Only training batches are augmented: payoff
and test splits never are.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from doracle.runtime import to_device

KINDS = ("none", "crop", "crop_flip")


def augment(x: torch.Tensor, kind: str, padding: int, gen: torch.Generator) -> torch.Tensor:
    if kind == "none":
        return x
    if kind not in KINDS:
        raise ValueError(f"unknown augmentation {kind!r}; valid: {', '.join(KINDS)}")
    n, _, h, w = x.shape
    off = to_device(torch.randint(0, 2 * padding + 1, (2, n), generator=gen), x.device)
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = (off[0][:, None] + torch.arange(h, device=x.device))[:, :, None]  # (n, h, 1)
    cols = (off[1][:, None] + torch.arange(w, device=x.device))[:, None, :]  # (n, 1, w)
    batch = torch.arange(n, device=x.device)[:, None, None]
    out = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)  # (n, c, h, w)
    if kind == "crop_flip":
        flip = to_device(torch.rand(n, generator=gen) < 0.5, x.device).view(-1, 1, 1, 1)
        out = torch.where(flip, out.flip(3), out)
    return out  # channels-last strided: the training loop makes it the memory format it trains in
