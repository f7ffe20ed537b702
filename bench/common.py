"""Shared by the benchmarks: a throw-away doracle project (workflow + params) and a checked shell call."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def sh(cmd: list[str], cwd: Path) -> tuple[float, str]:
    """Run ``cmd``; exit with its output if it fails; return (wall seconds, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return time.perf_counter() - t0, proc.stdout


def new_project(proj: Path, params: dict | Path, *, dvc: bool = False) -> Path:
    """The workflow files of this checkout and ``params`` (a dict or a file) as params.yaml."""
    proj.mkdir(parents=True, exist_ok=True)
    for f in ("Snakefile", ".gitignore"):
        shutil.copy(ROOT / f, proj / f)
    for d in ("workflow", "profiles"):
        shutil.copytree(ROOT / d, proj / d, dirs_exist_ok=True)
    if isinstance(params, dict):
        (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    else:
        shutil.copy(params, proj / "params.yaml")
    if dvc:  # the stages depend on the code they run (src/doracle/...): a copy of it
        shutil.copytree(ROOT / "src", proj / "src", dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
        shutil.copy(ROOT / ".dvcignore", proj / ".dvcignore")
        sh(["git", "init", "-q"], proj)
        sh(["dvc", "init", "-q"], proj)
        sh(["doracle", "dvc-yaml"], proj)
    return proj


def merge(base: dict, over: dict) -> dict:
    """``base`` with ``over``'s keys replaced, nested mappings merged key by key."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out
