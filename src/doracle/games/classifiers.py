"""Classifier artifacts: build, save and load (safetensors + JSON sidecar, hash-checked)."""

from __future__ import annotations

from pathlib import Path

import torch

from doracle import artifacts, models
from doracle.data import Dataset


def build(arch: str, data_meta: dict):
    c, h, w = data_meta["shape"]
    return models.create(arch, num_classes=int(data_meta["num_classes"]), in_chans=c, img_size=h,
                         mean=data_meta["mean"], std=data_meta["std"])


def new_classifier(arch: str, ds: Dataset, device: str):
    return build(arch, ds.meta).to(device)


def save(path: str | Path, model: torch.nn.Module, meta: dict) -> None:
    artifacts.save_tensors(path, model.state_dict(), meta)


def load(path: str | Path, device: str = "cpu") -> tuple[torch.nn.Module, dict]:
    """Rebuild the classifier recorded in ``path``'s sidecar and load its (hash-checked) weights."""
    state, meta = artifacts.load_tensors(path, device)
    with torch.random.fork_rng(devices=[]):  # building initialises weights: leave the caller's RNG alone
        model = build(meta["arch"], meta["data"])
    model.load_state_dict(state)
    return model.to(device).eval(), meta
