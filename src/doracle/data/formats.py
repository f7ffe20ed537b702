"""Writers of each downloadable dataset's official on-disk format, and synthetic images to fill them.

The tests write a few images per split with these and read them back through the real readers
(:mod:`doracle.data.download`); benchmarks use them to run a CIFAR-10-shaped pipeline offline. Each
writer produces the official layout under ``root`` (file names, dtypes, byte order, ``.mat``
variable names and shapes) from uint8 NCHW images and integer labels, the arrays a reader returns:

* MNIST: ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``, gzip'd idx files (big-endian
  header: magic 2051 / 2049, then the dimensions; then one byte per pixel / label).
* CIFAR-10, binary version: ``cifar-10-batches-bin/data_batch_{1..5}.bin`` and ``test_batch.bin``,
  records of 1 label byte + 3072 pixel bytes (the R, G, B planes, each 32x32 row-major), and
  ``batches.meta.txt``; optionally packed as ``cifar-10-binary.tar.gz``.
* SVHN, cropped digits: ``train_32x32.mat`` and ``test_32x32.mat`` (MATLAB 5, compressed), ``X``
  uint8 (32, 32, 3, N) and ``y`` uint8 (N, 1), digit 0 stored as label 10.
* TinyImageNet: ``tiny-imagenet-200/`` with ``wnids.txt``, ``words.txt``,
  ``train/<wnid>/images/<wnid>_<i>.JPEG`` + ``train/<wnid>/<wnid>_boxes.txt``, ``val/images/val_<i>.JPEG``
  + ``val/val_annotations.txt``; optionally zipped as ``tiny-imagenet-200.zip``. JPEG is lossy, so
  this writer returns the pixels as decoded from its files (what any reader sees).
"""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
from pathlib import Path

import numpy as np

MNIST_FILES = {
    ("train", "x"): "train-images-idx3-ubyte.gz", ("train", "y"): "train-labels-idx1-ubyte.gz",
    ("test", "x"): "t10k-images-idx3-ubyte.gz", ("test", "y"): "t10k-labels-idx1-ubyte.gz",
}
MNIST_MAGIC = {"x": 2051, "y": 2049}  # 0x0803: unsigned bytes, 3 dims; 0x0801: unsigned bytes, 1 dim
CIFAR10_DIR = "cifar-10-batches-bin"
CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"
CIFAR10_TRAIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
CIFAR10_TEST = "test_batch.bin"
CIFAR10_RECORD = 1 + 3 * 32 * 32
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                   "truck")
SVHN_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
TINYIMAGENET_DIR = "tiny-imagenet-200"
TINYIMAGENET_ARCHIVE = "tiny-imagenet-200.zip"


def synthetic_images(n: int, shape: tuple[int, ...], num_classes: int, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images of ``shape`` (C, H, W) and int64 labels, every class equally often.

    Each class has its own random prototype image; an example is its prototype plus Gaussian noise
    (σ = 40 grey levels), so the classes are learnable and the images distinct.
    """
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, size=(num_classes, *shape)).astype(np.float32)
    y = rng.permutation(np.arange(n) % num_classes).astype(np.int64)
    x = np.empty((n, *shape), dtype=np.uint8)
    for s in range(0, n, 4096):  # in chunks: CIFAR-sized sets without gigabytes of floats
        noise = rng.standard_normal((min(n - s, 4096), *shape), dtype=np.float32)
        x[s:s + len(noise)] = np.clip(np.rint(protos[y[s:s + len(noise)]] + 40.0 * noise), 0, 255)
    return x, y


def _images(x, channels: int | None, hw: tuple[int, int] | None, what: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype != np.uint8 or x.ndim != 4:
        raise ValueError(f"{what}: expected uint8 images (N, C, H, W), got {x.dtype} {x.shape}")
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{what}: expected {channels} channel(s), got shape {x.shape}")
    if hw is not None and x.shape[2:] != hw:
        raise ValueError(f"{what}: expected {hw[0]}x{hw[1]} images, got shape {x.shape}")
    return x


def _labels(y, n: int, num_classes: int, what: str) -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,) or (n and (y.min() < 0 or y.max() >= num_classes)):
        raise ValueError(f"{what}: expected {n} labels in 0..{num_classes - 1}, got shape {y.shape}")
    return y.astype(np.int64)


def _idx_bytes(a: np.ndarray, magic: int) -> bytes:
    header = np.array([magic, *a.shape], dtype=">u4").tobytes()  # big-endian, MSB first
    return header + np.ascontiguousarray(a, dtype=np.uint8).tobytes()


def write_mnist(root, x_train, y_train, x_test, y_test) -> Path:
    """The four gzip'd idx files under ``{root}/MNIST/raw/``; images (N, 1, H, W). Returns that dir."""
    out = Path(root) / "MNIST" / "raw"
    out.mkdir(parents=True, exist_ok=True)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x = _images(x, 1, None, f"mnist {split}")
        y = _labels(y, len(x), 10, f"mnist {split}")
        for kind, a in (("x", x[:, 0]), ("y", y.astype(np.uint8))):
            with gzip.GzipFile(out / MNIST_FILES[split, kind], "wb", mtime=0) as f:
                f.write(_idx_bytes(a, MNIST_MAGIC[kind]))
    return out


def cifar10_records(x, y) -> bytes:
    """CIFAR-10 binary records: per image its label byte, then the R, G and B planes (32x32 each)."""
    x = _images(x, 3, (32, 32), "cifar10")
    y = _labels(y, len(x), 10, "cifar10")
    rec = np.empty((len(x), CIFAR10_RECORD), dtype=np.uint8)
    rec[:, 0] = y
    rec[:, 1:] = x.reshape(len(x), -1)  # NCHW flattened = channel planes, each row-major
    return rec.tobytes()


def write_cifar10_binary(root, x_train, y_train, x_test, y_test, *, archive: bool = False) -> Path:
    """``{root}/cifar-10-batches-bin/`` (the training images spread over the five batch files, in
    order) or, with ``archive``, only ``{root}/cifar-10-binary.tar.gz`` holding that directory.
    Returns the directory or the archive."""
    root = Path(root)
    if len(x_train) < len(CIFAR10_TRAIN):
        raise ValueError(f"cifar10: at least {len(CIFAR10_TRAIN)} training images (one per batch file)")
    parts = np.array_split(np.arange(len(x_train)), len(CIFAR10_TRAIN))
    files = {name: cifar10_records(np.asarray(x_train)[i], np.asarray(y_train)[i])
             for name, i in zip(CIFAR10_TRAIN, parts, strict=True)}
    files[CIFAR10_TEST] = cifar10_records(x_test, y_test)
    files["batches.meta.txt"] = ("\n".join(CIFAR10_CLASSES) + "\n\n").encode()
    if archive:
        path = root / CIFAR10_ARCHIVE
        root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(path, "w:gz") as tar:
            d = tarfile.TarInfo(CIFAR10_DIR)
            d.type, d.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(d)
            for name, data in files.items():
                info = tarfile.TarInfo(f"{CIFAR10_DIR}/{name}")
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        return path
    out = root / CIFAR10_DIR
    out.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (out / name).write_bytes(data)
    return out


def write_svhn(root, x_train, y_train, x_test, y_test) -> Path:
    """``{root}/train_32x32.mat`` and ``test_32x32.mat``: ``X`` (32, 32, 3, N), ``y`` (N, 1), 0 → 10."""
    # scipy: this function's own
    from scipy.io import savemat

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        x = _images(x, 3, (32, 32), f"svhn {split}")
        y = _labels(y, len(x), 10, f"svhn {split}")
        mat_y = np.where(y == 0, 10, y).astype(np.uint8)[:, None]
        savemat(root / SVHN_FILES[split], {"X": np.ascontiguousarray(x.transpose(2, 3, 1, 0)), "y": mat_y},
                do_compression=True)
    return root


def _jpeg(path: Path, img: np.ndarray) -> np.ndarray:
    # PIL: image files only
    from PIL import Image

    Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))).save(path, "JPEG", quality=100, subsampling=0)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1)


def write_tinyimagenet(root, x_train, y_train, x_val, y_val, *, wnids: list[str] | None = None,
                       archive: bool = False) -> tuple[Path, np.ndarray, np.ndarray]:
    """``{root}/tiny-imagenet-200/`` (or, with ``archive``, only ``{root}/tiny-imagenet-200.zip``).

    ``wnids`` name the classes (default ``n00000000``, ``n00000001``, ... for as many classes as the
    labels need). Returns (directory or archive, the training pixels and the validation pixels as
    decoded from the JPEG files, in the order written: class by class for train, as given for val).
    """
    root = Path(root)
    x_train = _images(x_train, 3, None, "tinyimagenet train")
    x_val = _images(x_val, 3, None, "tinyimagenet val")
    n_cls = int(max(np.max(y_train, initial=0), np.max(y_val, initial=0))) + 1
    wnids = list(wnids) if wnids is not None else [f"n{i:08d}" for i in range(n_cls)]
    y_train = _labels(y_train, len(x_train), len(wnids), "tinyimagenet train")
    y_val = _labels(y_val, len(x_val), len(wnids), "tinyimagenet val")
    stage = root / (".tiny-imagenet-200.writing" if archive else "")
    base = stage / TINYIMAGENET_DIR
    base.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (base / "words.txt").write_text("".join(f"{w}\tclass {i}\n" for i, w in enumerate(wnids)))
    train_px = []
    for c, w in enumerate(wnids):
        d = base / "train" / w / "images"
        d.mkdir(parents=True, exist_ok=True)
        boxes = []
        for k, i in enumerate(np.flatnonzero(y_train == c)):
            name = f"{w}_{k}.JPEG"
            train_px.append(_jpeg(d / name, x_train[i]))
            h, wd = x_train.shape[2:]
            boxes.append(f"{name}\t0\t0\t{wd - 1}\t{h - 1}\n")
        (base / "train" / w / f"{w}_boxes.txt").write_text("".join(boxes))
    (base / "val" / "images").mkdir(parents=True, exist_ok=True)
    val_px, lines = [], []
    for i, (img, c) in enumerate(zip(x_val, y_val, strict=True)):
        name = f"val_{i}.JPEG"
        val_px.append(_jpeg(base / "val" / "images" / name, img))
        h, wd = img.shape[1:]
        lines.append(f"{name}\t{wnids[c]}\t0\t0\t{wd - 1}\t{h - 1}\n")
    (base / "val" / "val_annotations.txt").write_text("".join(lines))
    (base / "test" / "images").mkdir(parents=True, exist_ok=True)
    shape = (0, *x_train.shape[1:])
    decoded = (np.stack(train_px) if train_px else np.empty(shape, np.uint8),
               np.stack(val_px) if val_px else np.empty(shape, np.uint8))
    if not archive:
        return base, *decoded
    path = Path(shutil.make_archive(str(root / TINYIMAGENET_DIR), "zip", root_dir=stage,
                                    base_dir=TINYIMAGENET_DIR))
    shutil.rmtree(stage)
    return path, *decoded


WRITERS = {"mnist": write_mnist, "cifar10": write_cifar10_binary, "svhn": write_svhn,
           "tinyimagenet": write_tinyimagenet}
SHAPES = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32), "svhn": (3, 32, 32), "tinyimagenet": (3, 64, 64)}


def write_synthetic(dataset: str, root, n_train: int, n_test: int, *, num_classes: int = 10,
                    seed: int = 0) -> Path:
    """Synthetic images in ``dataset``'s official format under ``root`` (shape of the real set;
    TinyImageNet with ``num_classes`` classes), for offline benchmarks through the real reader."""
    x, y = synthetic_images(n_train + n_test, SHAPES[dataset], num_classes, seed)
    out = WRITERS[dataset](root, x[:n_train], y[:n_train], x[n_train:], y[n_train:])
    return out[0] if isinstance(out, tuple) else out
