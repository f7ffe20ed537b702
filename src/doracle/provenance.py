"""Which code made an artifact, and which code each pipeline job runs.

* :func:`record`: the block every JSON artifact (and every safetensors sidecar) carries: doracle's
  version and the sha256 of the whole package source that wrote it.
* :data:`CORE`: the package paths every job runs; each job shape of :mod:`doracle.jobtable` adds
  its own. Snakemake gets their digest as a rule param (:func:`code_digest`; the ``params`` rerun
  trigger, on by default, reruns a job whose code changed); DVC gets them as stage ``deps``
  (:func:`code_deps`), so ``dvc status`` / ``dvc repro`` rerun the same jobs. With
  ``DORACLE_MODULES_LOG=FILE`` in the environment every doracle command appends the modules it
  loaded to FILE (:func:`log_modules`): tests/test_pipeline_e2e.py checks that every module a job
  loaded is among its rule's paths.

Torch-free; imports nothing of doracle.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata as md
import json
import os
import sys
from pathlib import Path

#: the installed package's folder (what actually runs, editable install or not)
PACKAGE = Path(__file__).resolve().parent
#: where dvc.yaml's stages find the package source: the project layout of this repository
SOURCE_DIR = "src/doracle"

#: what every job runs: the command line, params, artifact I/O, the job table and graph, the engine,
#: the game registry, the population file, and the paired intervals the games' metrics use
CORE = ("__init__.py", "__main__.py", "forkserver.py", "artifacts.py", "compute.py", "config", "errors.py", "jobtable.py",
        "paths.py", "pipeline.py", "provenance.py", "registry.py", "runtime.py", "cli", "engine",
        "games/__init__.py", "games/graph.py", "games/population.py", "models/__init__.py", "models/entrypoints.py",
        "evaluation/__init__.py", "evaluation/intervals.py")


def _files(paths: tuple[str, ...]) -> list[Path]:
    out = set()
    for rel in paths:
        p = PACKAGE / rel
        out.update(p.rglob("*.py") if p.is_dir() else [p])
    return sorted(out)


@functools.cache
def _digest(paths: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for f in _files(paths):
        h.update(f.relative_to(PACKAGE).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def source_sha256() -> str:
    """sha256 of every ``.py`` file of the installed package (paths and contents)."""
    return _digest((".",))


def code_digest(paths: tuple[str, ...]) -> str:
    """sha256 of the package code at ``paths`` (files or folders, relative to the package folder):
    a job's code (:func:`doracle.jobtable.code_digest`); a change to it reruns the job."""
    return _digest(tuple(paths))


def code_deps(paths: tuple[str, ...]) -> list[str]:
    """The package code at ``paths`` as DVC ``deps`` (paths in the project: src/doracle/...)."""
    return [f"{SOURCE_DIR}/{p}" for p in paths]


@functools.cache
def version() -> str:
    try:
        return md.version("doracle")
    except md.PackageNotFoundError:
        return "unknown"


# a forked child (doracle.forkserver's jobs) digests the code on disk at its own start, not its parent's
os.register_at_fork(after_in_child=lambda: (_digest.cache_clear(), version.cache_clear()))


def module_files() -> list[str]:
    """The files of the doracle modules this process has loaded (as their ``__file__`` says)."""
    return [f for name, mod in list(sys.modules.items())
            if (name == "doracle" or name.startswith("doracle.")) and (f := getattr(mod, "__file__", None))]


def loaded_modules() -> list[str]:
    """The doracle modules this process has loaded, as package paths (``games/gan/jobs.py``)."""
    out = set()
    for f in module_files():
        try:
            out.add(Path(f).resolve().relative_to(PACKAGE).as_posix())
        except ValueError:  # another copy of the package: not this one's code
            continue
    return sorted(out)


def record() -> dict:
    """The provenance block of an artifact written by this process."""
    return {"version": version(), "source_sha256": source_sha256()}


#: imports that cost about as much as torch itself, which a job loads only when it needs them
HEAVY = ("torch._dynamo", "torch._inductor", "timm", "torchvision", "torchmetrics")


def log_modules(argv: list[str]) -> None:
    """With ``DORACLE_MODULES_LOG`` set: append a JSON line to that file: ``argv``, ``modules`` (the
    doracle modules loaded), ``packages`` (the top-level names of every other loaded module:
    ``torch``, ``timm``, ...), ``heavy`` (which of :data:`HEAVY`, the costly imports a job may
    avoid, it loaded), ``n_modules`` (``len(sys.modules)``) and ``forked`` (whether the job ran in a
    child of doracle.forkserver, whose preloaded modules it then has)."""

    path = os.environ.get("DORACLE_MODULES_LOG")
    if path:
        packages = sorted({name.partition(".")[0] for name in list(sys.modules)} - {"doracle"})
        with open(path, "a") as fh:
            fh.write(json.dumps({"argv": argv, "modules": loaded_modules(), "packages": packages,
                                 "heavy": [m for m in HEAVY if m in sys.modules], "n_modules": len(sys.modules),
                                 "forked": bool(getattr(sys.modules.get("doracle.forkserver"), "FORKED", False))})
                     + "\n")
