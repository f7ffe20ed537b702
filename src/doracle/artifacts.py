"""Artifact I/O: atomic writes, JSON + safetensors only (no pickle), sha256 recorded and checked.

Every artifact ``X.safetensors`` (weights, tensors) has a sidecar ``X.json`` holding its metadata:
the resolved params it came from, the seed, package versions, the sha256 of its inputs and of the
tensor file itself. :func:`load_tensors` refuses a tensor file whose hash differs from its sidecar
(unless it finds the sidecar that a writer killed between the pair's two renames had staged).

Reproducible bytes: timestamps and durations (keys ending in ``_seconds`` or ``_unix``) are never
part of an artifact's content. :func:`write_json` moves them into one top-level ``timing`` block
that mirrors where they were (``meta["training"]["train_seconds"]`` is written as
``meta["timing"]["training"]["train_seconds"]``; read it back with :func:`timing_of`), so two runs
with the same params and seed on CPU write the same bytes but for that block (docs/reliability.md).

Tamper and mix-up evidence: a JSON artifact carries ``content_sha256``, the hash of its content, which
:func:`read_json` checks (a payoff file edited by hand is refused, naming the file and what to
rerun); an input is recorded by that content hash (:func:`input_digest`), so the records do not
change with the timing blocks. Every artifact records its experiment; a job process that called
:func:`expect_experiment` refuses artifacts of another experiment.
Artifact I/O knows no game.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import importlib.metadata as md
import json
import os
import platform
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from doracle import provenance
from doracle.errors import ArtifactError

SCHEMA_VERSION = 1


#: the experiment whose artifacts this process may read (set by a pipeline job; None: unchecked)
_EXPECTED_EXPERIMENT: str | None = None


def expect_experiment(name: str | None) -> None:
    """From now on, refuse artifacts recorded by an experiment other than ``name`` (None: no check)."""
    global _EXPECTED_EXPERIMENT
    _EXPECTED_EXPERIMENT = name


def rerun_hint(path: str | Path) -> str:
    """What to run to get a good ``path`` again (the job that writes it, and what follows it)."""
    return (f"rerun the job that writes it: `snakemake -c2 --forcerun {path}` (the jobs after it rerun too), "
            f"or `dvc checkout {path}` when DVC has a good copy cached")


def _check_experiment(path: str | Path, doc: Any) -> None:
    got = doc.get("experiment") if isinstance(doc, dict) else None
    if _EXPECTED_EXPERIMENT is not None and got is not None and got != _EXPECTED_EXPERIMENT:
        raise ArtifactError(f"{path}: written by experiment {got!r}, not {_EXPECTED_EXPERIMENT!r} (a file copied "
                            f"from another experiment's results?); {rerun_hint(path)}")


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


#: this host's name as temp file names carry it (no dots)
_HOST = socket.gethostname().split(".")[0].replace(os.sep, "_") or "host"


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs: it exists (another user's counts) and is not
    a zombie, a dead process that its parent has not reaped (a killed job whose Snakemake was killed
    too, in a container whose first process reaps nobody)."""
    if pid <= 0:  # kill(0 or -n, 0) would ask about a process group, not a process
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):  # gone, or no pid at all (a crafted name)
        return False
    except OSError:  # it exists: another user's
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            state = fh.read().rsplit(b")", 1)[1].split()[0]  # after "pid (comm)", which may hold spaces
    except (OSError, IndexError):  # no /proc (not Linux), or gone since
        return True
    return state not in (b"Z", b"X", b"x")


def _dead_writers_temp_paths(path: Path):
    """The temp files and folders of ``path`` (``.NAME.HOST.PID.*.tmp``) whose writer, a process
    of this host, is gone (killed between writing and renaming); a live writer's, or another
    host's, are left out."""
    pattern = re.compile(rf"^\.{re.escape(path.name)}\.(?P<host>[^.]+)\.(?P<pid>\d+)\.[^.]+\.tmp$")
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        m = pattern.match(stale.name)
        if not m or stale.is_symlink() or m["host"] != _HOST or int(m["pid"]) == os.getpid():
            continue
        if not pid_alive(int(m["pid"])):
            yield stale


def _remove_dead_writers_temp_files(path: Path) -> None:
    """Remove the temp files and folders that killed writers of ``path`` left."""
    for stale in _dead_writers_temp_paths(path):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                stale.unlink()


def _stage(path: Path, data: bytes) -> str:
    """``data`` in a fsynced temp file beside ``path`` (``.NAME.HOST.PID.*.tmp``, 0666 less the umask)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_dead_writers_temp_files(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:  # a read-only or unwritable folder: name the file, not the temp file
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp's 0600 would hide results from a cluster's other users
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:  # e.g. a full disk: name the file, not the temp file
        Path(tmp).unlink(missing_ok=True)
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def atomic_write_files(files: list[tuple[str | Path, bytes]]) -> None:
    """Write several files as one commit: every temp file is written (and fsynced) before the
    first rename, then they are renamed in order. A failure while writing leaves every old file
    as it was; a kill between two renames leaves the earlier ones new and the later ones old, so
    put the file that vouches for the others (a sidecar with their hash) last."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, data in files:
            staged.append((_stage(Path(path), data), Path(path)))
        for tmp, path in staged:
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same directory and a rename: a crash (even
    SIGKILL) leaves the old file or none, never a half-written one. The temp file
    (``.NAME.HOST.PID.*.tmp``) of a writer that was killed is removed by the next write to ``path``.
    The file gets the usual permissions (0666 less the umask), as a plain open would give it."""
    atomic_write_files([(path, data)])


#: the file inside every folder doracle writes whole (a report): its content names the kind. A
#: folder is replaced only when it holds this marker with the same kind
FOLDER_MARKER = ".doracle-folder"


def _check_replaceable(path: Path, kind: str, inputs) -> None:
    """Refuse to replace ``path`` unless it is a ``kind`` folder doracle wrote (its marker), and
    never when it is, or holds, one of ``inputs``."""
    where = path.resolve()
    for inp in inputs:
        inp = Path(inp).resolve()
        if inp == where or where in inp.parents:
            raise ArtifactError(f"--out {path}: it holds the input {inp}; writing the {kind} there would delete "
                                "it (choose another folder)")
    if not (path.exists() or path.is_symlink()):
        return
    marker = path / FOLDER_MARKER
    if path.is_symlink() or not path.is_dir() or not marker.is_file() or marker.read_text().strip() != kind:
        raise ArtifactError(f"--out {path}: exists and is not a {kind} folder doracle wrote (no {FOLDER_MARKER} "
                            f"naming {kind!r} in it): refusing to replace it. Remove it yourself, or choose "
                            "another folder")


@contextlib.contextmanager
def atomic_dir(path: str | Path, kind: str = "report", inputs=()):
    """Yield a fresh temporary folder beside ``path`` (``.NAME.HOST.PID.*.tmp``, removed by the next
    writer if this one is killed); on success it replaces ``path`` (the old folder is removed
    first, so a crash in between leaves no folder rather than a mixed one), on failure it is
    removed and ``path`` is untouched. An existing ``path`` is replaced only when it is a ``kind``
    folder doracle wrote (:data:`FOLDER_MARKER`, written into every such folder), and never when
    it holds one of ``inputs``: ``--out results/exp`` does not delete an experiment."""
    path = Path(path)
    _check_replaceable(path, kind, inputs)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_dead_writers_temp_files(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_HOST}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would hide the folder from a cluster's other users
    try:
        (tmp / FOLDER_MARKER).write_text(kind + "\n")
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


#: keys whose values are timestamps or durations: kept in the ``timing`` block, apart from the content
TIMING_SUFFIXES = ("_seconds", "_unix")

#: when this module was imported (or its process forked): the start of the process where the kernel
#: does not say (not Linux); and the seconds from the process's start to then (:func:`_started_now`)
_IMPORTED = 0.0
_START_OFFSET: float | None = None


def _process_start_offset() -> float | None:
    """Seconds between this process's start and ``_IMPORTED`` (Linux: the process's start time in
    /proc/self/stat, in clock ticks since boot, against CLOCK_BOOTTIME; None elsewhere)."""
    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat[stat.rindex(")") + 2:].split()[19])  # field 22, after the command name
        since_start = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return max(0.0, since_start - (time.monotonic() - _IMPORTED))
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _started_now() -> None:
    """At import, and in a forked child (doracle.forkserver's jobs: the process started at the fork,
    not when its parent imported this module)."""
    global _IMPORTED, _START_OFFSET
    _IMPORTED = time.monotonic()
    _START_OFFSET = _process_start_offset()


_started_now()
os.register_at_fork(after_in_child=_started_now)


def process_seconds() -> float:
    """Seconds since this process started (the interpreter's and the imports' start-up included;
    to 10 ms on Linux, where the kernel records the start; elsewhere since doracle was imported).
    Every sealed JSON artifact records it when written (``timing.process_seconds``): a job's wall
    seconds are the largest over its JSON outputs (:func:`doracle.compute.job_wall_seconds`),
    with or without Snakemake's benchmark files."""
    return round(time.monotonic() - _IMPORTED + (_START_OFFSET or 0.0), 3)


def split_timing(obj: Any) -> tuple[Any, Any]:
    """``obj`` without its timing keys, and those keys in a mirror of ``obj``'s nesting (None when
    there are none; lists mirror element by element, ``{}`` where an element has none)."""
    if isinstance(obj, dict):
        keep, timing = {}, {}
        for k, v in obj.items():
            if isinstance(k, str) and k.endswith(TIMING_SUFFIXES):
                timing[k] = v
            else:
                keep[k], t = split_timing(v)
                if t is not None:
                    timing[k] = t
        return keep, timing or None
    if isinstance(obj, list):
        pairs = [split_timing(v) for v in obj]
        timing = [t or {} for _, t in pairs] if any(t is not None for _, t in pairs) else None
        return [v for v, _ in pairs], timing
    return obj, None


def _merge_timing(a: Any, b: Any) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        return {**a, **{k: _merge_timing(a.get(k), v) for k, v in b.items()}}
    return b if b is not None else a


SEAL = "content_sha256"


def _content_sha256(doc: dict) -> str:
    """sha256 of a JSON document's content: canonical JSON without its seal and timing block."""
    body = {k: v for k, v in doc.items() if k not in (SEAL, "timing")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()).hexdigest()


def write_json(path: str | Path, obj: Any, *, sealed: bool = True) -> None:
    """Write ``obj`` as JSON, atomically. A dict gets the writer's ``provenance`` (doracle's version
    and source hash); its timing keys go to its top-level ``timing`` block (written last), so
    everything before it is reproducible content, sealed by ``content_sha256``. ``sealed=False``:
    as it is (a file for other tools, e.g. DVC's flat metrics file, derived from sealed ones)."""
    atomic_write_bytes(path, json_bytes(obj, sealed=sealed))


def json_bytes(obj: Any, *, sealed: bool = True) -> bytes:
    """``obj`` as :func:`write_json` writes it."""
    if isinstance(obj, dict) and sealed:
        body, timing = split_timing({k: v for k, v in obj.items() if k not in ("timing", SEAL)})
        timing = _merge_timing(obj.get("timing"), timing)
        timing = {**(timing or {}), "process_seconds": process_seconds()}  # the writer's, not a copy's

        body["provenance"] = provenance.record()  # the code writing it now (not a copied document's)
        body = json.loads(json.dumps(body, allow_nan=False))  # the content as it will be read back
        obj = {**body, SEAL: _content_sha256(body), "timing": timing}
    return (json.dumps(obj, indent=1, sort_keys=False, allow_nan=False) + "\n").encode()


def timing_of(doc: dict, *keys: str) -> Any:
    """A timing value of a JSON artifact read back (``timing_of(meta, "training", "train_seconds")``);
    None when it was not recorded."""
    node = doc.get("timing")
    for k in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(k)
    return node


def content(doc: Any) -> Any:
    """A JSON artifact's reproducible content: everything but its ``timing`` block (a JSON file
    that is no document, e.g. a plot's table, is all content)."""
    return {k: v for k, v in doc.items() if k != "timing"} if isinstance(doc, dict) else doc


def _no_constant(name: str):
    raise ValueError(f"it holds {name}, which is not JSON (doracle never writes it)")


def _parse_json(path: str | Path) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh, parse_constant=_no_constant)
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing artifact") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc}; truncated or corrupted?); {rerun_hint(path)}") from None
    except ValueError as exc:  # NaN / Infinity
        raise ArtifactError(f"{path}: not an artifact doracle wrote: {exc}; {rerun_hint(path)}") from None
    except IsADirectoryError:
        raise ArtifactError(f"{path}: is a folder, not a JSON artifact") from None


def _check_seal(path: str | Path, doc: Any) -> None:
    """A document doracle wrote (it has ``provenance``) must carry its seal, and the seal must match."""
    if not isinstance(doc, dict) or (SEAL not in doc and "provenance" not in doc):
        return  # not written by write_json (another tool's file, DVC's flat metrics file)
    if doc.get(SEAL) != _content_sha256(doc):
        what = "its content does not match" if SEAL in doc else "it has lost"
        raise ArtifactError(f"{path}: {what} its {SEAL} seal (edited by hand or corrupted after it was "
                            f"written); {rerun_hint(path)}")


def read_json(path: str | Path) -> Any:
    """A JSON artifact (an object), its seal checked (refused when edited after it was written) and,
    in a job process, its experiment (:func:`expect_experiment`)."""
    doc = _parse_json(path)
    if not isinstance(doc, dict):
        raise ArtifactError(f"{path}: not an artifact doracle wrote (a JSON {type(doc).__name__}, not an object); "
                            f"{rerun_hint(path)}")
    _check_seal(path, doc)
    _check_experiment(path, doc)
    return doc


def require(path: str | Path, doc: dict, kind: str, keys: Iterable[str]) -> dict:
    """``doc`` (read from ``path``) when it is a ``kind`` document with every key of ``keys``;
    otherwise an :class:`ArtifactError` naming the file and what it lacks."""
    if doc.get("kind") != kind:
        got = f"a {doc['kind']!r} document" if isinstance(doc.get("kind"), str) else "no doracle document kind"
        raise ArtifactError(f"{path}: not a {kind} file ({got})")
    missing = [k for k in keys if k not in doc]
    if missing:
        raise ArtifactError(f"{path}: a {kind} file without {', '.join(missing)} (written by hand or by another "
                            f"tool?); {rerun_hint(path)}")
    return doc


def input_digest(path: str | Path) -> str:
    """How an input is recorded: a sealed JSON artifact by its content hash (the same in every
    run, whatever its timing block says; checked first), any other file by its sha256."""
    if str(path).endswith(".json"):
        doc = _parse_json(path)
        _check_seal(path, doc)
        if isinstance(doc, dict) and SEAL in doc:
            return doc[SEAL]
    return sha256_file(path)


def inputs_record(paths: Iterable[str | Path]) -> dict[str, str]:
    """The ``inputs`` block of an artifact: each input path and its :func:`input_digest`."""
    return {str(p): input_digest(p) for p in paths}


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("doracle", "torch", "timm", "numpy", "scipy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def metadata(kind: str, *, experiment: str | None, params: dict, seed: int | None,
             inputs: Iterable[str | Path] = (), **extra) -> dict:
    """The common metadata block every artifact records (its timestamp goes to the timing block)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": kind,
        "experiment": experiment,
        "seed": seed,
        "params": params,
        "inputs": inputs_record(inputs),
        "versions": versions(),
        "created_unix": round(time.time(), 3),
        **extra,
    }


def save_tensors(path: str | Path, tensors: dict, meta: dict) -> None:
    """Save torch tensors to ``path`` (safetensors) and ``meta`` + their hash to the sidecar, both as
    one commit (:func:`atomic_write_files`)."""
    # safetensors: loaded only when a tensor file is read or written
    from safetensors.torch import save

    path = Path(path)
    side = sidecar(path)
    if side == path:
        raise ArtifactError(f"{path}: a tensor file must not end in .json (its sidecar, {side}, would overwrite "
                            "it): use a .safetensors path")
    data = save({k: v.detach().cpu().contiguous() for k, v in tensors.items()})
    # one commit, the sidecar (which vouches for the tensors by their sha256) renamed last: a failure
    # leaves the old pair; a kill between the renames leaves the new tensors and the new sidecar
    # staged beside the old one, and the next load finishes the commit (_finish_killed_commit)
    atomic_write_files([(path, data), (side, json_bytes({**meta, "sha256": hashlib.sha256(data).hexdigest()}))])


def check_sha256(path: str | Path, expected: str, since: str) -> None:
    """Raise ArtifactError when ``path``'s sha256 is not ``expected`` (``since``: when it was recorded)."""
    if sha256_file(path) != expected:
        raise ArtifactError(f"{path}: changed {since} (corrupted, or replaced by another run's file); "
                            f"{rerun_hint(path)}")


def sidecar(path: str | Path) -> Path:
    return Path(path).with_suffix(".json")


def _finish_killed_commit(path: Path, digest: str) -> dict | None:
    """The sidecar that a writer of ``path`` staged and vouches for the tensor file on disk (its
    sha256), left when the writer was killed between :func:`save_tensors`' two renames: the new
    tensors are in place, the old sidecar (or none) still beside them. Its content is returned, and
    the commit finished (it is renamed into place) once its writer is gone; None when there is none."""
    side = sidecar(path)
    dead = set(_dead_writers_temp_paths(side))
    for staged in sorted(side.parent.glob(f".{glob.escape(side.name)}.*.tmp")):
        if staged.is_symlink() or not staged.is_file():
            continue
        try:
            doc = read_json(staged)
        except ArtifactError:
            continue
        if doc.get("sha256") != digest:
            continue
        if staged in dead:  # a live writer (or another host's) renames its own
            with contextlib.suppress(OSError):  # a reader without write access still gets the pair
                # (a writer of this host removes dead writers' staged files before its first rename;
                # one on another host writing the same path at this moment could lose its sidecar to
                # this one: the loader then refuses the pair, as it did before this roll-forward)
                os.replace(staged, side)
        return doc
    return None


def load_tensors(path: str | Path, device: str = "cpu") -> tuple[dict, dict]:
    """Load a safetensors file after checking its sha256 against the sidecar's (or, for a pair a
    killed writer left half-committed, against the sidecar it staged: :func:`_finish_killed_commit`)."""
    # safetensors: loaded only when a tensor file is read or written
    from safetensors import SafetensorError
    from safetensors.torch import load

    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: missing artifact")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{path}: missing artifact") from None
    digest = hashlib.sha256(data).hexdigest()
    try:
        meta = read_json(sidecar(path))
    except ArtifactError:  # none yet (the first pair's writer was killed between its renames), or damaged
        meta = _finish_killed_commit(path, digest)
        if meta is None:
            raise
    if meta.get("sha256") != digest:
        meta = _finish_killed_commit(path, digest) or meta
    if meta.get("sha256") != digest:
        raise ArtifactError(f"{path}: sha256 {digest[:12]}... does not match the recorded "
                            f"{str(meta.get('sha256'))[:12]}... (truncated, corrupted or replaced file); "
                            f"{rerun_hint(path)}")
    try:
        tensors = load(data)
    except (SafetensorError, Exception) as exc:  # noqa: BLE001 - any decode failure is an artifact error
        raise ArtifactError(f"{path}: not a valid safetensors file ({exc})") from None
    return {k: v.to(device) for k, v in tensors.items()}, meta
