"""Datasets: a deterministic train / payoff / test split stored as one safetensors file.

* ``digits``: scikit-learn's bundled 8x8 digits (1797 images, no download): the offline default.
* ``mnist``, ``cifar10``, ``svhn``, ``tinyimagenet``: downloaded (md5-checked) and read from their
  official files by :mod:`doracle.data.download` (for clusters). Offline, preparation fails fast
  saying what to download and where to put it. :mod:`doracle.data.formats` writes those formats.

The prepared file holds ``x_<split>`` as uint8 (pixel * scale, NCHW) and ``y_<split>`` as int64;
the sidecar records the split fractions, seed, sizes, the per-channel mean/std of the training
split and the sha256 of the split indices.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from doracle.artifacts import atomic_write_files, json_bytes, load_tensors, sidecar
from doracle.errors import ArtifactError, ConfigError

SPLITS = ("train", "payoff", "test")


@dataclass
class Raw:
    """A whole dataset before splitting: uint8 images (N, C, H, W), int labels, the pixel scale."""

    x: np.ndarray
    y: np.ndarray
    scale: float
    num_classes: int
    source: str


def load_digits_raw() -> Raw:
    # scikit-learn: the digits data set only
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.uint8)[:, None, :, :]  # values 0..16
    return Raw(x, d.target.astype(np.int64), 16.0, 10, "sklearn.datasets.load_digits")


def split_indices(y: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Stratified, seeded split into train / payoff / test (class proportions kept)."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        n = len(idx)
        n_train = int(round(fractions["train"] * n))
        n_payoff = int(round(fractions["payoff"] * n))
        parts["train"].append(idx[:n_train])
        parts["payoff"].append(idx[n_train:n_train + n_payoff])
        parts["test"].append(idx[n_train + n_payoff:])
    return {s: np.sort(np.concatenate(parts[s])) for s in SPLITS}


def prepare(params, out: str | Path) -> dict:
    """Build the split dataset file for ``params.data`` at ``out`` (atomic)."""
    # safetensors: loaded only when a tensor file is read or written
    from safetensors.numpy import save

    cfg = params.data
    if cfg.dataset == "digits":
        raw = load_digits_raw()
    else:
        # the readers and torchvision's download: only when a file set is read
        from doracle.data.download import load_raw

        raw = load_raw(cfg.dataset, cfg.root, cfg.download)
    idx = split_indices(raw.y, dict(cfg.splits), params.seed)
    if cfg.max_train is not None:
        idx["train"] = idx["train"][: cfg.max_train]
    empty = [s for s in SPLITS if len(idx[s]) == 0]
    if empty:
        raise ConfigError(f"data.splits: the {', '.join(empty)} split(s) of {cfg.dataset} ({len(raw.y)} examples"
                          f"{'' if cfg.max_train is None else f', data.max_train {cfg.max_train}'}) hold no example")
    if sidecar(out) == Path(out):
        raise ConfigError(f"--out {out}: a data set must not end in .json (its sidecar would overwrite it): use "
                          "a .safetensors path")
    tensors = {}
    for s in SPLITS:
        tensors[f"x_{s}"] = np.ascontiguousarray(raw.x[idx[s]])
        tensors[f"y_{s}"] = np.ascontiguousarray(raw.y[idx[s]])
    xt = raw.x[idx["train"]].astype(np.float64) / raw.scale
    data = save(tensors)
    h = hashlib.sha256()
    for s in SPLITS:
        h.update(idx[s].tobytes())
    meta = {
        "kind": "dataset", "experiment": params.experiment, "dataset": cfg.dataset, "source": raw.source, "seed": params.seed,
        "params": params.stage("seed", "data"),
        "splits": {s: int(len(idx[s])) for s in SPLITS}, "fractions": dict(cfg.splits),
        "split_indices_sha256": h.hexdigest(),
        "shape": list(raw.x.shape[1:]), "num_classes": raw.num_classes, "scale": raw.scale,
        "mean": xt.mean(axis=(0, 2, 3)).tolist(), "std": np.maximum(xt.std(axis=(0, 2, 3)), 1e-3).tolist(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }
    # both files as one commit, the sidecar (which vouches for the tensors) last: nothing is replaced
    # until both are written, so a failure leaves the old data set whole
    atomic_write_files([(out, data), (sidecar(out), json_bytes(meta))])
    return meta


@dataclass
class Dataset:
    """The prepared splits as float tensors in [0, 1] on ``device``."""

    x: dict
    y: dict
    meta: dict

    @property
    def shape(self) -> tuple[int, int, int]:
        c, h, w = self.meta["shape"]
        return c, h, w


def check(tensors: dict, meta: dict, path: str | Path) -> None:
    """A prepared data set as :func:`prepare` writes it, or an :class:`ArtifactError` naming the
    file and the split: every split's images uint8 (N, C, H, W) of the sidecar's shape, labels
    integers in 0..num_classes-1, as many as images."""
    # torch: this module is imported by jobs that run no network
    import torch

    for key in ("shape", "num_classes", "scale"):
        if key not in meta:
            raise ArtifactError(f"{path}: its sidecar has no {key!r} (not a data set written by `doracle data`)")
    shape, n_classes = tuple(meta["shape"]), int(meta["num_classes"])
    for s in SPLITS:
        x, y = tensors.get(f"x_{s}"), tensors.get(f"y_{s}")
        if x is None or y is None:
            raise ArtifactError(f"{path}: no x_{s} / y_{s} tensors (has {', '.join(sorted(tensors))}): "
                                "not a data set written by `doracle data`")
        if x.dtype != torch.uint8:
            raise ArtifactError(f"{path}: x_{s} has dtype {str(x.dtype).removeprefix('torch.')}, expected uint8 "
                                f"images (pixel values times the scale {meta['scale']:g})")
        if tuple(x.shape[1:]) != shape:
            raise ArtifactError(f"{path}: x_{s} has images of shape {list(x.shape[1:])}, its sidecar says {list(shape)}")
        if y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool or y.dim() != 1:
            raise ArtifactError(f"{path}: y_{s} must be integer class labels (N,), got {str(y.dtype).removeprefix('torch.')} "
                                f"{list(y.shape)}")
        if len(y) != len(x):
            raise ArtifactError(f"{path}: x_{s} holds {len(x)} images but y_{s} {len(y)} labels")
        bad = ((y < 0) | (y >= n_classes)).nonzero()
        if len(bad):
            i = int(bad[0])
            raise ArtifactError(f"{path}: y_{s}[{i}] is {int(y[i])}, not a class of the data set (0..{n_classes - 1})")


def load(path: str | Path, device: str = "cpu", train_device: str | None = None) -> Dataset:
    """The prepared splits on ``device`` (the training split on ``train_device`` when given: a
    training job keeps it in host memory until it knows where it fits)."""
    # torch: this module is imported by jobs that run no network
    import torch

    if not Path(path).is_file():
        raise ArtifactError(f"{path}: missing data set (written by `doracle data`)")
    t, meta = load_tensors(path)  # its sha256 checked against its sidecar's
    check(t, meta, path)
    scale = float(meta["scale"])
    where = {s: device for s in SPLITS}
    where["train"] = train_device or device
    x = {s: (t[f"x_{s}"].to(torch.float32) / scale).to(where[s]) for s in SPLITS}
    y = {s: t[f"y_{s}"].to(torch.int64).to(where[s]) for s in SPLITS}
    return Dataset(x, y, meta)
