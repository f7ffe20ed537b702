"""Download and read the cluster datasets: MNIST, CIFAR-10, SVHN, TinyImageNet.

Every file comes from one table, :data:`RESOURCES` (dataset → its files: URL, name under
``data.root``, md5, and for an archive the directory it unpacks to). A missing file is fetched
with torchvision's ``download_url`` (``file://`` URLs: copied) into a temporary directory beside
its destination, its md5 checked, and only then moved into place; an archive is unpacked the same
way (and kept beside its directory). So a failed or interrupted download leaves nothing a later run
would take for a good file, and a wrong checksum is a :class:`~doracle.errors.DoracleError` naming
the file. Files already in place are used as they are, without a checksum (that is how an offline
machine works: put them there by hand, see :data:`WHERE`); the readers still check their format.

The readers are doracle's own and pickle-free; each validates its format (magic numbers, sizes,
counts, label ranges) and names the file that is wrong. All official splits are pooled, training
images first, into one :class:`~doracle.data.Raw` (``doracle.data.prepare`` re-splits them):

* MNIST: the four gzip'd idx files in ``{root}/MNIST/raw/`` (torchvision's location).
* CIFAR-10: the *binary* version, ``{root}/cifar-10-batches-bin/`` (from ``cifar-10-binary.tar.gz``).
* SVHN: ``{root}/train_32x32.mat`` and ``test_32x32.mat`` (label 10 is digit 0 and becomes 0).
* TinyImageNet: ``{root}/tiny-imagenet-200/``: train images, and the labelled val images.

:mod:`doracle.data.formats` writes each of these formats (the tests and offline benchmarks use it).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from doracle.data import Raw
from doracle.data.formats import (
    CIFAR10_ARCHIVE,
    CIFAR10_DIR,
    CIFAR10_RECORD,
    CIFAR10_TEST,
    CIFAR10_TRAIN,
    MNIST_FILES,
    MNIST_MAGIC,
    SVHN_FILES,
    TINYIMAGENET_ARCHIVE,
    TINYIMAGENET_DIR,
)
from doracle.errors import DoracleError


class Resource(NamedTuple):
    """One file to download: ``filename`` is its path under ``data.root``; an archive also names
    the directory (under ``data.root``) it unpacks to in ``extract``."""

    url: str
    filename: str
    md5: str
    extract: str | None = None


MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"  # torchvision's mirror
CIFAR10_URL = f"https://www.cs.toronto.edu/~kriz/{CIFAR10_ARCHIVE}"
SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
TINYIMAGENET_URL = f"http://cs231n.stanford.edu/{TINYIMAGENET_ARCHIVE}"

_MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

#: dataset → the files it needs (the one place URLs and checksums live; tests point it at file://)
RESOURCES: dict[str, list[Resource]] = {
    "mnist": [Resource(MNIST_URL + f, f"MNIST/raw/{f}", _MNIST_MD5[f]) for f in MNIST_FILES.values()],
    "cifar10": [Resource(CIFAR10_URL, CIFAR10_ARCHIVE, "c32a1d4ab5d03f1284b67883e8d87530", CIFAR10_DIR)],
    "svhn": [
        Resource(SVHN_URL + SVHN_FILES["train"], SVHN_FILES["train"], "e26dedcc434d2e4c54c9b2d4a06d8373"),
        Resource(SVHN_URL + SVHN_FILES["test"], SVHN_FILES["test"], "eb5a983be6a315427106f1b164d9cef3"),
    ],
    "tinyimagenet": [Resource(TINYIMAGENET_URL, TINYIMAGENET_ARCHIVE, "90528d7ca1a48142e341f4ef8d21d0de",
                              TINYIMAGENET_DIR)],
}

#: what to put where by hand (offline), for the error message
WHERE = {
    "mnist": f"the four MNIST idx files (train/t10k images and labels, .gz) from {MNIST_URL} "
             "into {root}/MNIST/raw/",
    "cifar10": f"the binary CIFAR-10 {CIFAR10_URL} into {{root}}/ (or unpacked there, "
               f"{{root}}/{CIFAR10_DIR}/)",
    "svhn": f"{SVHN_FILES['train']} and {SVHN_FILES['test']} from {SVHN_URL} into {{root}}/",
    "tinyimagenet": f"{TINYIMAGENET_URL} into {{root}}/ (or unpacked there, {{root}}/{TINYIMAGENET_DIR}/)",
}


def _fail(name: str, root: str, exc: Exception) -> DoracleError:
    return DoracleError(
        f"could not obtain dataset {name!r} under {root!r} ({type(exc).__name__}: {exc}). "
        f"This machine may be offline: download {WHERE[name].format(root=root)} and run again "
        f"(or set data.download: false once the files are there)."
    )


def _missing(name: str, root: str, missing: list[str]) -> DoracleError:
    return DoracleError(
        f"dataset {name!r} is not under {root!r} (missing: {', '.join(missing)}) and data.download "
        f"is false: download {WHERE[name].format(root=root)} and run again (or set data.download: "
        f"true where the network is reachable)."
    )


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _download(r: Resource, root: Path) -> None:
    """Fetch ``r`` to ``root / r.filename``: into a temporary directory, md5 checked, then moved.

    ``file://`` URLs (a mirror on a shared file system, the tests) are copied here, with the same
    md5 check: torchvision's ``download_url`` cannot read them (it needs an HTTP response length).
    """
    # torchvision: downloads only
    from torchvision.datasets.utils import check_integrity, download_url

    dest = root / r.filename
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=dest.parent))
    try:
        part = tmp / dest.name
        try:
            if urllib.parse.urlsplit(r.url).scheme == "file":
                with urllib.request.urlopen(r.url) as src, open(part, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                if not check_integrity(part, r.md5):
                    raise RuntimeError("File not found or corrupted.")
            else:
                download_url(r.url, str(tmp), dest.name, r.md5)
        except RuntimeError:  # torchvision's "File not found or corrupted." after the md5 check
            if not part.is_file():
                raise
            raise DoracleError(
                f"{dest.name} downloaded from {r.url} is corrupt or incomplete: md5 {_md5(part)} "
                f"({part.stat().st_size} bytes), expected {r.md5}. Nothing was kept; run again to "
                f"retry, or download it by hand into {dest.parent}/.") from None
        os.replace(part, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extract(r: Resource, root: Path) -> None:
    """Unpack the archive ``r`` into a temporary directory, then move ``r.extract`` into place."""
    # torchvision: downloads only
    from torchvision.datasets.utils import extract_archive

    archive, dest = root / r.filename, root / str(r.extract)
    tmp = Path(tempfile.mkdtemp(prefix=".partial-", dir=root))
    try:
        try:
            extract_archive(str(archive), str(tmp))
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
            raise DoracleError(
                f"{archive}: cannot be unpacked ({type(exc).__name__}: {exc}): the archive is "
                f"corrupt or incomplete. Delete it and run again (or download it again).") from None
        if not (tmp / str(r.extract)).is_dir():
            raise DoracleError(f"{archive}: holds no {r.extract}/ directory (not the expected archive)")
        try:
            os.replace(tmp / str(r.extract), dest)
        except OSError:
            if not dest.is_dir():  # else another job unpacked the same archive meanwhile
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def fetch(name: str, root: str | Path, download: bool) -> None:
    """Make every file of ``name`` present under ``root``: download (if allowed) and unpack what is
    missing. Raises :class:`DoracleError`: offline advice when files are missing or unreachable."""
    root = Path(root)
    missing = []
    for r in RESOURCES[name]:
        if (root / (r.extract or r.filename)).exists():
            continue
        try:
            if not (root / r.filename).is_file():
                if not download:
                    missing.append(f"{root / r.extract}/ (or {root / r.filename})" if r.extract
                                   else str(root / r.filename))
                    continue
                _download(r, root)
            if r.extract:
                _extract(r, root)
        except DoracleError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to obtain a file gets the same advice
            raise _fail(name, str(root), exc) from None
    if missing:
        raise _missing(name, str(root), missing)


# ---------------------------------------------------------------------------------------- readers


def _labels_below(y: np.ndarray, n: int, path: Path) -> None:
    if len(y) and int(y.max()) >= n:
        i = int(np.argmax(y >= n))
        raise DoracleError(f"{path}: label {int(y[i])} at record {i} is not a class (0..{n - 1})")


def _idx(path: Path, magic: int) -> np.ndarray:
    """One gzip'd idx file of unsigned bytes: big-endian magic (0x08 type byte, dims), dims, data."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError, zlib.error) as exc:
        raise DoracleError(f"{path}: not a complete gzip file ({type(exc).__name__}: {exc})") from None
    ndim = magic & 0xFF
    head = 4 * (1 + ndim)
    if len(data) < head:
        raise DoracleError(f"{path}: {len(data)} bytes, shorter than the idx header ({head} bytes)")
    got = int.from_bytes(data[:4], "big")
    if got >> 16 == magic >> 16 and got & 0xFF == ndim and (got >> 8) & 0xFF != 0x08:
        kinds = {0x09: "int8", 0x0B: "int16", 0x0C: "int32", 0x0D: "float32", 0x0E: "float64"}
        raise DoracleError(f"{path}: idx data type 0x{(got >> 8) & 0xFF:02X} "
                           f"({kinds.get((got >> 8) & 0xFF, 'unknown')}), expected 0x08 (unsigned bytes, as MNIST's "
                           "official files): not the official format")
    if got != magic:
        raise DoracleError(f"{path}: magic number {got}, expected {magic} (not an idx{ndim}-ubyte file)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    if len(data) - head != int(np.prod(dims)):
        raise DoracleError(f"{path}: header says {'x'.join(map(str, dims))} = {int(np.prod(dims))} bytes "
                           f"of data, the file has {len(data) - head} (truncated or corrupt)")
    return np.frombuffer(data, dtype=np.uint8, offset=head).reshape(dims)


def read_mnist(root: str | Path) -> Raw:
    d = Path(root) / "MNIST" / "raw"
    xs, ys = [], []
    for split in ("train", "test"):
        px, py = d / MNIST_FILES[split, "x"], d / MNIST_FILES[split, "y"]
        x, y = _idx(px, MNIST_MAGIC["x"]), _idx(py, MNIST_MAGIC["y"])
        if len(x) != len(y):
            raise DoracleError(f"{px} holds {len(x)} images but {py} {len(y)} labels")
        if xs and x.shape[1:] != xs[0].shape[1:]:
            raise DoracleError(f"{px}: images of {x.shape[1]}x{x.shape[2]}, the training images are "
                               f"{xs[0].shape[1]}x{xs[0].shape[2]}")
        _labels_below(y, 10, py)
        xs.append(x)
        ys.append(y)
    x = np.concatenate(xs)[:, None]
    return Raw(x, np.concatenate(ys).astype(np.int64), 255.0, 10, "MNIST idx files (MNIST/raw)")


def read_cifar10(root: str | Path) -> Raw:
    d = Path(root) / CIFAR10_DIR
    xs, ys = [], []
    for name in (*CIFAR10_TRAIN, CIFAR10_TEST):
        path = d / name
        data = path.read_bytes()
        if not data or len(data) % CIFAR10_RECORD:
            raise DoracleError(f"{path}: {len(data)} bytes is not a (non-zero) multiple of the "
                               f"{CIFAR10_RECORD}-byte record (1 label + 3072 pixels): truncated, or "
                               f"not the binary version of CIFAR-10")
        rec = np.frombuffer(data, dtype=np.uint8).reshape(-1, CIFAR10_RECORD)
        _labels_below(rec[:, 0], 10, path)
        xs.append(rec[:, 1:].reshape(-1, 3, 32, 32))  # R, G, B planes, each row-major
        ys.append(rec[:, 0])
    x = np.concatenate(xs)
    return Raw(x, np.concatenate(ys).astype(np.int64), 255.0, 10, "CIFAR-10 binary version")


def read_svhn(root: str | Path) -> Raw:
    # scipy: this function's own
    from scipy.io import loadmat

    xs, ys = [], []
    for split in ("train", "test"):
        path = Path(root) / SVHN_FILES[split]
        if not path.is_file():
            raise FileNotFoundError(path)
        try:
            m = loadmat(path, variable_names=["X", "y"])
        except Exception as exc:  # noqa: BLE001 - scipy raises many types for a broken file
            raise DoracleError(f"{path}: not a readable .mat file ({type(exc).__name__}: {exc})") from None
        if "X" not in m or "y" not in m:
            raise DoracleError(f"{path}: needs the variables X and y, has {sorted(k for k in m if k[0] != '_')}")
        x, y = np.asarray(m["X"]), np.asarray(m["y"])
        if x.ndim != 4 or x.shape[:3] != (32, 32, 3):
            raise DoracleError(f"{path}: X has shape {x.shape}, expected (32, 32, 3, N)")
        if y.size != x.shape[3] or y.ndim > 2:
            raise DoracleError(f"{path}: y has shape {y.shape}, expected ({x.shape[3]}, 1) like X's N")
        y = y.reshape(-1)
        if x.dtype != np.uint8 and (x.dtype.kind not in "iuf" or (x.size and (
                x.min() < 0 or x.max() > 255 or np.any(x != np.rint(x))))):
            raise DoracleError(f"{path}: X ({x.dtype}) holds values other than the integers 0..255")
        bad = np.flatnonzero((y < 1) | (y > 10) | (y != np.rint(y)))
        if len(bad):
            raise DoracleError(f"{path}: label {y[bad[0]]} at {bad[0]} is not 1..10 (10 is digit 0)")
        xs.append(x.astype(np.uint8, copy=False).transpose(3, 2, 0, 1))  # (H, W, C, N) -> (N, C, H, W)
        ys.append(np.where(y == 10, 0, y).astype(np.int64))
    return Raw(np.ascontiguousarray(np.concatenate(xs)), np.concatenate(ys), 255.0, 10,
               "SVHN train_32x32.mat + test_32x32.mat")


def read_tinyimagenet(root: str | Path) -> Raw:
    # PIL: image files only
    from PIL import Image

    base = Path(root) / TINYIMAGENET_DIR
    wnids = (base / "wnids.txt").read_text().split()
    cls = {w: i for i, w in enumerate(wnids)}
    files, ys = [], []
    for w in wnids:
        for f in sorted((base / "train" / w / "images").glob("*.JPEG")):
            files.append(f)
            ys.append(cls[w])
    ann = base / "val" / "val_annotations.txt"
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        f, w = (line.split("\t") + [""])[:2]
        if w not in cls:
            raise DoracleError(f"{ann}:{n}: class {w!r} is not in wnids.txt")
        files.append(base / "val" / "images" / f)
        ys.append(cls[w])
    x = None
    for i, f in enumerate(files):
        try:
            with Image.open(f) as im:
                img = np.asarray(im.convert("RGB")).transpose(2, 0, 1)
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for a broken image
            raise DoracleError(f"{f}: not a readable image ({type(exc).__name__}: {exc})") from None
        if x is None:
            x = np.empty((len(files), *img.shape), dtype=np.uint8)
        elif img.shape != x.shape[1:]:
            raise DoracleError(f"{f}: a {img.shape[2]}x{img.shape[1]} image, the first was "
                               f"{x.shape[3]}x{x.shape[2]}")
        x[i] = img
    if x is None:
        raise DoracleError(f"{base}: no images (train/<wnid>/images/*.JPEG, val/images)")
    return Raw(x, np.asarray(ys, dtype=np.int64), 255.0, len(wnids), TINYIMAGENET_DIR)


READERS: dict[str, Callable[[str | Path], Raw]] = {
    "mnist": read_mnist, "cifar10": read_cifar10, "svhn": read_svhn, "tinyimagenet": read_tinyimagenet,
}


def load_raw(name: str, root: str, download: bool) -> Raw:
    """Every image of ``name`` (official splits pooled, train first), fetched first if needed."""
    fetch(name, root, download)
    try:
        return READERS[name](root)
    except FileNotFoundError as exc:  # a file inside an unpacked directory is missing
        redo = [f"remove {Path(root) / r.extract}/ to unpack it again from {r.filename} (downloaded "
                f"again if it is not in {root}/ either)" for r in RESOURCES[name] if r.extract]
        raise DoracleError(f"dataset {name!r}: {exc.filename or exc} is missing, so the copy under "
                           f"{root!r} is incomplete: {'; '.join(redo) or 'put it back'}") from None
