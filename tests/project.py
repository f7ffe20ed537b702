"""Build throw-away doracle projects (workflow files + a params file) for end-to-end tests."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from doracle import artifacts

ROOT = Path(__file__).resolve().parents[1]

TINY = {
    "experiment": "tiny",
    "data": {"max_train": 240},
    "training": {"epochs": 2, "batch_size": 64},
    "base": {"epochs": 1},
    "defenses": {"pgd_at": {"attack": {"name": "pgd", "steps": 2, "rel_step_size": 0.5, "restarts": 1,
                                       "random_start": True}}},
    "do": {"iterations": 2, "capacity": 8,
           "attacker": {"attack": {"name": "pgd", "steps": 3, "rel_step_size": 0.4, "restarts": 1,
                                   "random_start": True}}},
    "baselines": {"methods": ["erm", "pgd_at"], "epochs": 1},
    "evaluation": {
        "attacks": {
            "fgsm": {"name": "fgsm", "steps": 1, "rel_step_size": 1.0, "restarts": 1, "random_start": False},
            "pgd": {"name": "pgd", "steps": 3, "rel_step_size": 0.4, "restarts": 1, "random_start": True},
            "arc": {"name": "arc", "steps": 1, "rel_step_size": 0.25, "restarts": 1, "random_start": False}},
        "per_member": ["pgd"],
        "autoattack": {"version": "custom", "attacks": ["apgd-ce"], "apgd_iterations": 10, "target_classes": 2},
        "eps_curve": {"attack": {"name": "pgd", "steps": 3, "rel_step_size": 0.4, "restarts": 1,
                                 "random_start": True}, "eps": ["0", "16/255", "32/255"]},
        "max_examples": 60},
}


# The tiny GAN experiment (params-gan.yaml made small): the shared run's second experiment
TINY_GAN = {
    "experiment": "tinygan",
    "game": "gan",
    "data": {"max_train": 240},
    "training": {"batch_size": 64},
    "do": {"iterations": 2, "tolerance": 0.01},
    "gan": {"warmup_epochs": 2, "pair_epochs": 1, "generator_epochs": 1, "discriminator_epochs": 1,
            "payoff_latents": 200,
            "reference": {"epochs": 1}, "metrics": {"samples": 120, "is_split_size": 40, "bootstrap": 50, "grid": 16}},
}

# The cluster requests of the shared run's AT experiment: GPU families on partition `gpu`, payoff
# as a CPU job on `cpu` (tests/test_slurm.py runs the same params through SLURM). A local run
# ignores them, and no artifact records them (`resources` is no stage's params).
RESOURCES = {
    "train": {"gpu": 1, "slurm_partition": "gpu", "mem_mb": 1500, "runtime": 30},
    "best_response": {"gpu": 1, "slurm_partition": "gpu", "mem_mb": 1500, "runtime": 30},
    "payoff": {"gpu": 0, "slurm_partition": "cpu", "mem_mb": 1000, "runtime": 10},
    "evaluate": {"gpu": 1, "slurm_partition": "gpu", "mem_mb": 2000, "runtime": 30},
}


def gan_params(**over) -> dict:
    raw = yaml.safe_load((ROOT / "params-gan.yaml").read_text())
    for k, v in TINY_GAN.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) and isinstance(raw.get(k), dict) else v
    raw["gan"] = {**raw["gan"], **TINY_GAN["gan"], "reference": {**raw["gan"]["reference"], "epochs": 1},
                  "metrics": {**raw["gan"]["metrics"], **TINY_GAN["gan"]["metrics"]}}
    raw.update(over)
    return raw


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "attacks" else v
    return out


def params_with(overrides: dict | None = None) -> dict:
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    return merge(merge(base, TINY), overrides or {})


def tool_env(env: dict | None = None) -> dict:
    """The environment a test runs a tool in: this interpreter's bin folder (snakemake, dvc, doracle)
    first on PATH, whether or not the virtual environment is activated."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 900,
        env: dict | None = None) -> subprocess.CompletedProcess:
    env = tool_env(env)
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


def shared_params() -> dict:
    """The AT experiment of the shared run (conftest.py's ``shared``): TINY with defender best
    responses long enough (8 epochs, a checkpoint after each) for the SIGKILL test to catch one in
    training, and the SLURM test's cluster requests."""
    return params_with({"do": {"defender": {"epochs": 8}}, "resources": RESOURCES})


def make_project(path: Path, params: dict, *, dvc: bool = True, extra: dict[str, dict] | None = None) -> Path:
    """A git + DVC repo holding the workflow and ``params`` as its params.yaml (``extra``: more
    params files beside it, e.g. ``{"params-gan.yaml": gan_params()}``: more default experiments)."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "Snakefile", path / "Snakefile")
    shutil.copytree(ROOT / "workflow", path / "workflow", dirs_exist_ok=True)
    shutil.copytree(ROOT / "profiles", path / "profiles", dirs_exist_ok=True)
    shutil.copy(ROOT / ".gitignore", path / ".gitignore")
    # the DVC stages depend on the code they run (src/doracle/...): a copy of it, Python's caches
    # ignored as in the repository (.dvcignore)
    shutil.copytree(ROOT / "src", path / "src", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    shutil.copy(ROOT / ".dvcignore", path / ".dvcignore")
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for name, raw in (extra or {}).items():
        (path / name).write_text(yaml.safe_dump(raw, sort_keys=False))
    if dvc:
        run(["git", "init", "-q"], path)
        run(["dvc", "init", "-q"], path)
        run(["dvc", "config", "core.analytics", "false"], path)
        run([sys.executable, "-m", "doracle", "dvc-yaml"], path)
    return path


def as_dvc_cmd(cmd: str, files: dict[str, str]) -> str:
    """A Snakemake job's command as dvc.yaml has it: Snakemake's jobs read their experiment's params
    as written to results/<exp>/params.yaml, DVC's the experiment's file (``files``: exp -> file)."""
    return re.sub(r"--params results/([^/ ]+)/params\.yaml", lambda m: f"--params {files[m.group(1)]}", cmd)


def copy_project(src: Path, dest: Path) -> Path:
    """A writable copy of a finished project (the shared run's tree): every file with its
    modification time, Snakemake's and DVC's records included, so the copy is as finished as the
    original (``snakemake -n`` plans nothing). Links are copied as links."""
    shutil.copytree(src, dest, symlinks=True, copy_function=shutil.copy2)
    for d in [dest, *(p for p in dest.rglob("*") if p.is_dir() and not p.is_symlink())]:
        d.chmod(d.stat().st_mode | 0o200)  # a chmod-ed read-only original (no bind mount) copies as such
    for f in dest.rglob("*"):
        if f.is_file() and not f.is_symlink():
            f.chmod(f.stat().st_mode | 0o200)
    return dest


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def body(p: Path) -> bytes:
    """A file's bytes; a JSON artifact's up to its ``timing`` block (written last: the writing
    process's age, durations, timestamps), the part two runs of the same params write the same."""
    data = p.read_bytes()
    i = data.find(b'\n "timing": ') if p.suffix == ".json" else -1
    return data[:i] if i >= 0 else data


def same_results(a: Path, b: Path) -> list[str]:
    """The artifacts of two runs compared: every safetensors file byte for byte; every JSON file
    byte for byte but for its ``timing`` block (timestamps and durations, written last), which must
    be all that differs. Returns the files compared."""
    files = sorted(str(p.relative_to(a)) for p in a.rglob("*") if p.suffix in (".safetensors", ".json"))
    assert files == sorted(str(p.relative_to(b)) for p in b.rglob("*") if p.suffix in (".safetensors", ".json"))
    for f in files:
        x, y = body(a / f), body(b / f)
        if f.endswith(".json"):
            assert artifacts.content(json.loads((a / f).read_text())) == artifacts.content(
                json.loads((b / f).read_text())), f
        assert x == y, f
    return files
