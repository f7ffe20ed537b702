"""Artifact I/O: atomic writes, JSON + safetensors only (no pickle), sha256 recorded and checked.

Every artifact ``X.safetensors`` (weights, tensors) has a sidecar ``X.json`` holding its metadata:
the resolved params it came from, the seed, package versions, the sha256 of its inputs and of the
tensor file itself. :func:`load_tensors` refuses a tensor file whose hash differs from its sidecar.
Artifact I/O knows no game.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from doracle.errors import ArtifactError

SCHEMA_VERSION = 1


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing artifact") from None
    return h.hexdigest()


def digest(obj: Any) -> str:
    """sha256 of ``obj`` as canonical JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | Path):
    """Yield a fresh temporary folder beside ``path``; on success it replaces ``path`` (the old
    folder is removed first, so a crash in between leaves no folder rather than a mixed one), on
    failure it is removed and ``path`` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would hide the folder from a cluster's other users
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False, allow_nan=False) + "\n").encode())


def read_json(path: str | Path) -> Any:
    try:
        with open(path) as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing artifact") from None
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc})") from None


def versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("doracle", "torch", "timm", "numpy", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def metadata(kind: str, *, params: dict, seed: int | None, inputs: Iterable[str | Path] = (), **extra) -> dict:
    """The common metadata block every artifact records."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "seed": seed,
        "params": params,
        "inputs": {str(p): sha256_file(p) for p in inputs},
        "versions": versions(),
        "created_unix": round(time.time(), 3),
        **extra,
    }


def save_tensors(path: str | Path, tensors: dict, meta: dict) -> None:
    """Save torch tensors atomically to ``path`` (safetensors) and ``meta`` + hash to the sidecar."""
    from safetensors.torch import save

    path = Path(path)
    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    atomic_write_bytes(path, data)
    write_json(sidecar(path), {**meta, "sha256": hashlib.sha256(data).hexdigest()})


def check_sha256(path: str | Path, expected: str, since: str) -> None:
    """Raise ArtifactError when ``path``'s sha256 is not ``expected`` (``since``: when it was recorded)."""
    if sha256_file(path) != expected:
        raise ArtifactError(f"{path}: changed {since}")


def sidecar(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def load_tensors(path: str | Path, device: str = "cpu") -> tuple[dict, dict]:
    """Load a safetensors file after checking its sha256 against the sidecar's."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: missing artifact")
    meta = read_json(sidecar(path))
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing artifact") from None
    digest = hashlib.sha256(data).hexdigest()
    if meta.get("sha256") != digest:
        raise ArtifactError(f"{path}: sha256 {digest[:12]}... does not match the recorded "
                            f"{str(meta.get('sha256'))[:12]}... (corrupt or replaced file)")
    try:
        tensors = load(data)
    except (SafetensorError, Exception) as exc:  # noqa: BLE001 - any decode failure is an artifact error
        raise ArtifactError(f"{path}: not a valid safetensors file ({exc})") from None
    return {k: v.to(device) for k, v in tensors.items()}, meta
