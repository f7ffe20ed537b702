"""The dataset readers and the download path, offline, on small files in each official format.

Each dataset is written with :mod:`doracle.data.formats`, whose output is first checked byte by
byte against the official format description (so writer and reader cannot share a mistake), then
prepared through ``doracle.data.prepare``: the prepared splits must hold exactly the written
(image, label) pairs. Downloads use ``file://`` URLs in the one resource table.
"""

from __future__ import annotations

import collections
import functools
import gzip
import hashlib
import shutil
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from doracle import config, data
from doracle.data import download, formats
from doracle.errors import DoracleError

SPLITS = {"train": 0.4, "payoff": 0.3, "test": 0.3}  # 3 images per class: one in each split
SHAPE = {"mnist": (1, 28, 28), "cifar10": (3, 32, 32), "svhn": (3, 32, 32), "tinyimagenet": (3, 64, 64)}


def pairs(x, y) -> collections.Counter:
    return collections.Counter((np.ascontiguousarray(img).tobytes(), int(lbl)) for img, lbl in zip(x, y, strict=True))


def prepare(tmp_path, name, root, download_=False):
    p = config.validate({"data": {"dataset": name, "root": str(root), "download": download_,
                                  "splits": SPLITS}})
    out = tmp_path / f"{name}.safetensors"
    meta = data.prepare(p, out)
    t = load_file(str(out))
    x = np.concatenate([t[f"x_{s}"] for s in data.SPLITS])
    y = np.concatenate([t[f"y_{s}"] for s in data.SPLITS])
    return meta, x, y


def write(name, root, *, archive=False, n_train=20, n_test=10, seed=0):
    """Write ``name`` under ``root``; return (path written, expected pooled images, labels)."""
    if name == "tinyimagenet":
        x, y = formats.synthetic_images(n_train + n_test, SHAPE[name], 3, seed)
        path, xt, xv = formats.write_tinyimagenet(root, x[:n_train], y[:n_train], x[n_train:], y[n_train:],
                                                  archive=archive)
        assert np.abs(xt.astype(int) - x[:n_train][np.argsort(y[:n_train], kind="stable")]).mean() < 8
        return path, np.concatenate([xt, xv]), np.concatenate([np.sort(y[:n_train]), y[n_train:]])
    x, y = formats.synthetic_images(n_train + n_test, SHAPE[name], 10, seed)
    args = (root, x[:n_train], y[:n_train], x[n_train:], y[n_train:])
    path = formats.write_cifar10_binary(*args, archive=archive) if name == "cifar10" else formats.WRITERS[name](*args)
    return path, x, y


# ------------------------------------------------------------ the writers follow the official format


def test_mnist_writer_writes_gzipped_big_endian_idx_files(tmp_path):
    _, x, y = write("mnist", tmp_path)
    d = tmp_path / "MNIST" / "raw"
    assert sorted(f.name for f in d.iterdir()) == sorted(
        ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
         "t10k-labels-idx1-ubyte.gz"])
    img = gzip.decompress((d / "train-images-idx3-ubyte.gz").read_bytes())
    lab = gzip.decompress((d / "t10k-labels-idx1-ubyte.gz").read_bytes())
    assert img[:16] == bytes([0, 0, 8, 3, 0, 0, 0, 20, 0, 0, 0, 28, 0, 0, 0, 28])
    assert img[16:16 + 784] == x[0, 0].tobytes() and len(img) == 16 + 20 * 784
    assert lab[:8] == bytes([0, 0, 8, 1, 0, 0, 0, 10]) and lab[8:] == bytes(y[20:].tolist())


def test_cifar10_writer_writes_label_then_rgb_planes(tmp_path):
    _, x, y = write("cifar10", tmp_path)
    d = tmp_path / "cifar-10-batches-bin"
    assert {f.name for f in d.iterdir()} == {*(f"data_batch_{i}.bin" for i in range(1, 6)), "test_batch.bin",
                                              "batches.meta.txt"}
    b1 = (d / "data_batch_1.bin").read_bytes()
    assert len(b1) == 4 * 3073  # 20 training images over 5 files
    assert b1[0] == y[0]
    assert b1[1:1 + 1024] == x[0, 0].tobytes()  # R plane, row-major
    assert b1[1 + 2048:3073] == x[0, 2].tobytes()  # B plane
    assert (d / "test_batch.bin").read_bytes()[3073] == y[21]
    assert (d / "batches.meta.txt").read_text().split()[:2] == ["airplane", "automobile"]


def test_svhn_writer_writes_matlab_x_hwcn_and_y_with_10_for_zero(tmp_path):
    from scipy.io import loadmat, whosmat

    _, x, y = write("svhn", tmp_path)
    assert sorted(whosmat(tmp_path / "train_32x32.mat")) == [("X", (32, 32, 3, 20), "uint8"),
                                                             ("y", (20, 1), "uint8")]
    m = loadmat(tmp_path / "test_32x32.mat")
    assert m["X"].dtype == np.uint8 and m["X"].shape == (32, 32, 3, 10)
    assert np.array_equal(m["X"][:, :, 1, 2], x[20 + 2, 1])  # row, column, channel, image
    assert set(m["y"].ravel()) <= set(range(1, 11)) and np.array_equal(m["y"].ravel() % 10, y[20:])


def test_tinyimagenet_writer_writes_the_official_tree(tmp_path):
    base, xt, _ = write("tinyimagenet", tmp_path)
    wnids = (base / "wnids.txt").read_text().split()
    assert base.name == "tiny-imagenet-200" and len(wnids) == 3
    for w in wnids:
        assert (base / "train" / w / f"{w}_boxes.txt").is_file()
        assert sorted(f.name for f in (base / "train" / w / "images").iterdir())[0] == f"{w}_0.JPEG"
    first = (base / "val" / "val_annotations.txt").read_text().splitlines()[0].split("\t")
    assert first[0] == "val_0.JPEG" and first[1] in wnids and len(first) == 6
    assert (base / "val" / "images" / "val_0.JPEG").read_bytes()[:2] == b"\xff\xd8"  # JPEG SOI
    assert (base / "test" / "images").is_dir()


def test_synthetic_images_are_balanced_deterministic_and_class_dependent():
    x, y = formats.synthetic_images(200, (3, 8, 8), 10, seed=1)
    x2, y2 = formats.synthetic_images(200, (3, 8, 8), 10, seed=1)
    assert x.dtype == np.uint8 and x.shape == (200, 3, 8, 8) and y.dtype == np.int64
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert np.bincount(y).tolist() == [20] * 10
    means = np.stack([x[y == c].mean(0) for c in range(10)]).astype(float)
    within = np.abs(x[y == 0] - means[0]).mean()
    between = np.abs(means[0] - means[1]).mean()
    assert between > 2 * within and len(pairs(x, y)) == 200


# ------------------------------------------------------------------ reading and preparing, offline


@pytest.mark.parametrize("name", ["mnist", "cifar10", "svhn", "tinyimagenet"])
def test_prepared_splits_hold_exactly_the_written_images_and_labels(tmp_path, name):
    _, x, y = write(name, tmp_path / "root")
    raw = download.READERS[name](tmp_path / "root")
    assert np.array_equal(raw.x, x) and np.array_equal(raw.y, y)  # pooled, train first, in file order
    assert raw.x.dtype == np.uint8 and raw.y.dtype == np.int64 and raw.scale == 255.0
    meta, px, py = prepare(tmp_path, name, tmp_path / "root")
    assert meta["shape"] == list(SHAPE[name]) and px.shape[1:] == SHAPE[name]
    assert meta["num_classes"] == (3 if name == "tinyimagenet" else 10)
    assert sum(meta["splits"].values()) == len(x) and min(meta["splits"].values()) > 0
    assert pairs(px, py) == pairs(x, y)


def test_svhn_labels_stored_as_double_read_the_same(tmp_path):
    """MATLAB may store y as double; the reader takes any integer-valued labels."""
    from scipy.io import loadmat, savemat

    _, x, y = write("svhn", tmp_path)
    for f in ("train_32x32.mat", "test_32x32.mat"):
        m = loadmat(tmp_path / f)
        savemat(tmp_path / f, {"X": m["X"], "y": m["y"].astype(np.float64)})
    raw = download.read_svhn(tmp_path)
    assert np.array_equal(raw.x, x) and np.array_equal(raw.y, y)


@pytest.mark.parametrize("name, what", [
    ("mnist", r"the four MNIST idx files .* from https://ossci-datasets.s3.amazonaws.com/mnist/ into .*/d/MNIST/raw/"),
    ("cifar10", r"the binary CIFAR-10 https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz into .*/d/ \(or unpacked there"),
    ("svhn", r"train_32x32.mat and test_32x32.mat from http://ufldl.stanford.edu/housenumbers/ into .*/d/"),
    ("tinyimagenet", r"http://cs231n.stanford.edu/tiny-imagenet-200.zip into .*/d/"),
])
def test_missing_files_without_download_say_what_to_fetch_and_where(tmp_path, name, what):
    with pytest.raises(DoracleError, match=rf"dataset '{name}' is not under .* data.download is false: download {what}"):
        prepare(tmp_path, name, tmp_path / "d")
    assert not (tmp_path / "d").exists()


# --------------------------------------------------------------------------------------- downloads


@pytest.fixture
def base_url(request, tmp_path, monkeypatch):
    """Where the 'server' directory is published: a file:// URL, or (for ``scheme`` "http") a
    loopback HTTP server, so that torchvision's ``download_url`` itself runs (no network)."""
    server = tmp_path / "server"
    server.mkdir()
    if request.param == "file":
        yield server.as_uri() + "/"
        return
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            if not isinstance(sys.exc_info()[1], ConnectionError):  # a download stopped early closes its connection
                super().handle_error(request, client_address)

    httpd = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(server)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/"
    httpd.shutdown()
    httpd.server_close()


def serve(monkeypatch, tmp_path, base_url, name, *, md5=None, truncate=False):
    """Write ``name``'s official files into the server directory and point RESOURCES at them."""
    server = tmp_path / "server"
    _, x, y = write(name, server, archive=name in ("cifar10", "tinyimagenet"))
    by_name = {f.name: f for f in server.rglob("*") if f.is_file()}
    table = []
    for r in download.RESOURCES[name]:
        f = by_name[Path(r.filename).name]
        good_md5 = hashlib.md5(f.read_bytes()).hexdigest()
        if truncate:
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
        table.append(r._replace(url=base_url + f.relative_to(server).as_posix(), md5=md5 or good_md5))
    monkeypatch.setitem(download.RESOURCES, name, table)
    return x, y


def leftovers(root: Path) -> list[str]:
    return [str(p.relative_to(root)) for p in root.rglob(".partial-*")]


BOTH = pytest.mark.parametrize("base_url", ["file", "http"], indirect=True)


@BOTH
@pytest.mark.parametrize("name", ["mnist", "cifar10", "svhn", "tinyimagenet"])
def test_download_checks_md5_unpacks_and_reads(tmp_path, monkeypatch, base_url, name):
    x, y = serve(monkeypatch, tmp_path, base_url, name)
    root = tmp_path / "root"
    _, px, py = prepare(tmp_path, name, root, download_=True)
    assert pairs(px, py) == pairs(x, y)
    for r in download.RESOURCES[name]:
        assert (root / r.filename).is_file()
        assert r.extract is None or (root / r.extract).is_dir()
    assert leftovers(root) == []
    shutil.rmtree(tmp_path / "server")  # a second run needs no network: the files are in place
    _, px2, py2 = prepare(tmp_path, name, root, download_=True)
    assert np.array_equal(px, px2) and np.array_equal(py, py2)


def _nothing_trusted(name, root: Path):
    for r in download.RESOURCES[name]:
        assert not (root / r.filename).exists(), r.filename
        assert r.extract is None or not (root / r.extract).exists()
    assert leftovers(root) == []


@BOTH
@pytest.mark.parametrize("name", ["mnist", "cifar10", "svhn"])
def test_wrong_md5_is_a_clear_error_and_keeps_nothing(tmp_path, monkeypatch, base_url, name):
    serve(monkeypatch, tmp_path, base_url, name, md5="0" * 32)
    root = tmp_path / "root"
    first = download.RESOURCES[name][0]
    with pytest.raises(DoracleError, match=rf"{Path(first.filename).name} downloaded from {base_url}.* md5 [0-9a-f]{{32}} "
                                           rf"\(\d+ bytes\), expected 0{{32}}"):
        prepare(tmp_path, name, root, download_=True)
    _nothing_trusted(name, root)
    assert not (tmp_path / f"{name}.safetensors").exists()


@BOTH
@pytest.mark.parametrize("name", ["mnist", "cifar10"])
def test_truncated_download_keeps_nothing_and_a_rerun_fetches_again(tmp_path, monkeypatch, base_url, name):
    serve(monkeypatch, tmp_path, base_url, name, truncate=True)
    root = tmp_path / "root"
    with pytest.raises(DoracleError, match="corrupt or incomplete"):
        prepare(tmp_path, name, root, download_=True)
    _nothing_trusted(name, root)
    x, y = serve(monkeypatch, tmp_path, base_url, name)  # the server now has the whole files
    _, px, py = prepare(tmp_path, name, root, download_=True)
    assert pairs(px, py) == pairs(x, y)


def test_unreachable_download_gives_the_offline_advice(tmp_path, monkeypatch):
    table = [r._replace(url=(tmp_path / "nowhere" / Path(r.filename).name).as_uri())
             for r in download.RESOURCES["cifar10"]]
    monkeypatch.setitem(download.RESOURCES, "cifar10", table)
    with pytest.raises(DoracleError, match=r"may be offline: download the binary CIFAR-10 "
                                           r"https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz into .*/root/"):
        prepare(tmp_path, "cifar10", tmp_path / "root", download_=True)
    _nothing_trusted("cifar10", tmp_path / "root")


@pytest.mark.parametrize("name", ["cifar10", "tinyimagenet"])
def test_an_archive_put_in_place_by_hand_is_unpacked_offline(tmp_path, name):
    root = tmp_path / "root"
    _, x, y = write(name, root, archive=True)
    _, px, py = prepare(tmp_path, name, root)
    assert pairs(px, py) == pairs(x, y)


# ------------------------------------------------------------------------------- corrupt files


def test_cifar10_file_not_a_multiple_of_the_record_is_named(tmp_path):
    write("cifar10", tmp_path)
    f = tmp_path / "cifar-10-batches-bin" / "data_batch_3.bin"
    f.write_bytes(f.read_bytes()[:-1])
    with pytest.raises(DoracleError, match=r"data_batch_3.bin: 12291 bytes is not a \(non-zero\) multiple of the 3073"):
        prepare(tmp_path, "cifar10", tmp_path)


def test_cifar10_label_out_of_range_is_named(tmp_path):
    write("cifar10", tmp_path)
    f = tmp_path / "cifar-10-batches-bin" / "test_batch.bin"
    b = bytearray(f.read_bytes())
    b[3073] = 10
    f.write_bytes(bytes(b))
    with pytest.raises(DoracleError, match=r"test_batch.bin: label 10 at record 1 is not a class"):
        prepare(tmp_path, "cifar10", tmp_path)


def _rewrite_gz(path: Path, edit):
    path.write_bytes(gzip.compress(edit(bytearray(gzip.decompress(path.read_bytes())))))


def test_mnist_bad_magic_is_named(tmp_path):
    write("mnist", tmp_path)

    def magic(b):
        b[3] = 3  # 2049 -> 2051
        return bytes(b)

    _rewrite_gz(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte.gz", magic)
    with pytest.raises(DoracleError, match=r"train-labels-idx1-ubyte.gz: magic number 2051, expected 2049"):
        prepare(tmp_path, "mnist", tmp_path)


def test_mnist_truncated_data_and_mismatched_counts_are_named(tmp_path):
    write("mnist", tmp_path)
    raw_dir = tmp_path / "MNIST" / "raw"
    _rewrite_gz(raw_dir / "t10k-images-idx3-ubyte.gz", lambda b: bytes(b[:-5]))
    with pytest.raises(DoracleError, match=r"t10k-images-idx3-ubyte.gz: header says 10x28x28 = 7840 bytes of data, "
                                           r"the file has 7835"):
        prepare(tmp_path, "mnist", tmp_path)
    write("mnist", tmp_path)
    f = raw_dir / "train-labels-idx1-ubyte.gz"
    f.write_bytes(f.read_bytes()[:-10])
    with pytest.raises(DoracleError, match=r"train-labels-idx1-ubyte.gz: not a complete gzip file"):
        prepare(tmp_path, "mnist", tmp_path)

    write("mnist", tmp_path)

    def one_label_less(b):
        b[7] -= 1
        return bytes(b[:-1])

    _rewrite_gz(raw_dir / "train-labels-idx1-ubyte.gz", one_label_less)
    with pytest.raises(DoracleError, match=r"train-images-idx3-ubyte.gz holds 20 images but .*train-labels-idx1-ubyte.gz 19"):
        prepare(tmp_path, "mnist", tmp_path)


def test_svhn_corrupt_mat_and_bad_label_are_named(tmp_path):
    from scipy.io import loadmat, savemat

    write("svhn", tmp_path)
    f = tmp_path / "test_32x32.mat"
    good = f.read_bytes()
    f.write_bytes(good[: len(good) // 2])
    with pytest.raises(DoracleError, match=r"test_32x32.mat: not a readable .mat file"):
        prepare(tmp_path, "svhn", tmp_path)
    f.write_bytes(good)
    m = loadmat(f)
    m["y"][3, 0] = 0  # the official files have no 0: digit 0 is 10
    savemat(f, {"X": m["X"], "y": m["y"]})
    with pytest.raises(DoracleError, match=r"test_32x32.mat: label 0 at 3 is not 1..10"):
        prepare(tmp_path, "svhn", tmp_path)


def test_tinyimagenet_corrupt_image_and_unknown_class_are_named(tmp_path):
    base, _, _ = write("tinyimagenet", tmp_path)
    img = base / "val" / "images" / "val_1.JPEG"
    good = img.read_bytes()
    img.write_bytes(good[:40])
    with pytest.raises(DoracleError, match=r"val_1.JPEG: not a readable image"):
        prepare(tmp_path, "tinyimagenet", tmp_path)
    img.write_bytes(good)
    ann = base / "val" / "val_annotations.txt"
    ann.write_text(ann.read_text() + "val_9.JPEG\tn99999999\t0\t0\t63\t63\n")
    with pytest.raises(DoracleError, match=r"val_annotations.txt:11: class 'n99999999' is not in wnids.txt"):
        prepare(tmp_path, "tinyimagenet", tmp_path)


def test_corrupt_archive_is_named_and_nothing_is_unpacked(tmp_path):
    path, _, _ = write("cifar10", tmp_path, archive=True)
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(DoracleError, match=r"cifar-10-binary.tar.gz: cannot be unpacked .* corrupt or incomplete"):
        prepare(tmp_path, "cifar10", tmp_path)
    assert not (tmp_path / "cifar-10-batches-bin").exists() and leftovers(tmp_path) == []


def test_missing_file_inside_an_unpacked_directory_is_a_clear_error(tmp_path):
    write("cifar10", tmp_path)
    (tmp_path / "cifar-10-batches-bin" / "data_batch_2.bin").unlink()
    with pytest.raises(DoracleError, match=r"data_batch_2.bin is missing, .* remove .*/cifar-10-batches-bin/ to unpack it again from cifar-10-binary.tar.gz"):
        prepare(tmp_path, "cifar10", tmp_path)
