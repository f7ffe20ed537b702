"""Download + prepare of the cluster datasets through torchvision.

Offline (or behind a firewall) :func:`load_raw` fails fast with a message naming the files to
fetch and the directory to put them in; with the files in place it works without network.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from doracle.data import Raw
from doracle.errors import DoracleError

TINYIMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"

WHERE = {
    "mnist": "the four MNIST idx files (train/t10k images and labels, .gz) into {root}/MNIST/raw/",
    "cifar10": "cifar-10-python.tar.gz into {root}/",
    "svhn": "train_32x32.mat and test_32x32.mat into {root}/",
    "tinyimagenet": f"{TINYIMAGENET_URL} unpacked into {{root}}/tiny-imagenet-200/",
}


def _fail(name: str, root: str, exc: Exception) -> DoracleError:
    return DoracleError(
        f"could not obtain dataset {name!r} under {root!r} ({type(exc).__name__}: {exc}). "
        f"This machine may be offline: download {WHERE[name].format(root=root)} and run again "
        f"(or set data.download: false once the files are there)."
    )


def _torchvision(name: str, root: str, download: bool):
    from torchvision import datasets

    if name == "mnist":
        parts = [datasets.MNIST(root, train=t, download=download) for t in (True, False)]
        x = np.concatenate([p.data.numpy() for p in parts])[:, None]
        y = np.concatenate([p.targets.numpy() for p in parts])
        return Raw(x.astype(np.uint8), y.astype(np.int64), 255.0, 10, "torchvision.datasets.MNIST")
    if name == "cifar10":
        parts = [datasets.CIFAR10(root, train=t, download=download) for t in (True, False)]
        x = np.concatenate([p.data for p in parts]).transpose(0, 3, 1, 2)
        y = np.concatenate([np.asarray(p.targets) for p in parts])
        return Raw(x.astype(np.uint8), y.astype(np.int64), 255.0, 10, "torchvision.datasets.CIFAR10")
    if name == "svhn":
        parts = [datasets.SVHN(root, split=s, download=download) for s in ("train", "test")]
        x = np.concatenate([p.data for p in parts])
        y = np.concatenate([p.labels for p in parts])
        return Raw(x.astype(np.uint8), y.astype(np.int64), 255.0, 10, "torchvision.datasets.SVHN")
    raise KeyError(name)


def _tinyimagenet(root: str, download: bool) -> Raw:
    from PIL import Image

    base = Path(root) / "tiny-imagenet-200"
    if not base.is_dir():
        if not download:
            raise FileNotFoundError(base)
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(TINYIMAGENET_URL, download_root=root)
    wnids = (base / "wnids.txt").read_text().split()
    cls = {w: i for i, w in enumerate(wnids)}
    xs, ys = [], []
    for w in wnids:
        for f in sorted((base / "train" / w / "images").glob("*.JPEG")):
            xs.append(np.asarray(Image.open(f).convert("RGB")))
            ys.append(cls[w])
    for line in (base / "val" / "val_annotations.txt").read_text().splitlines():
        f, w = line.split("\t")[:2]
        xs.append(np.asarray(Image.open(base / "val" / "images" / f).convert("RGB")))
        ys.append(cls[w])
    x = np.stack(xs).transpose(0, 3, 1, 2)
    return Raw(x.astype(np.uint8), np.asarray(ys, dtype=np.int64), 255.0, 200, "tiny-imagenet-200")


def load_raw(name: str, root: str, download: bool) -> Raw:
    Path(root).mkdir(parents=True, exist_ok=True)
    try:
        if name == "tinyimagenet":
            return _tinyimagenet(root, download)
        return _torchvision(name, root, download)
    except DoracleError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to obtain the files gets the same advice
        raise _fail(name, root, exc) from None
