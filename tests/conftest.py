import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLURM_CLUSTER = ROOT / "tests" / "slurm_cluster.sh"


def run_cli(*args, cwd=None, check=False, env=None):
    """Run the real ``doracle`` command line in a subprocess."""
    proc = subprocess.run([sys.executable, "-m", "doracle", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"doracle {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def root():
    return ROOT


def pytest_collection_modifyitems(config, items):
    has_cuda = False
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        pass
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("true", "1")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real one-node SLURM cluster for the session: tests/slurm_cluster.sh installs Debian's
    packages when missing, starts munged, slurmctld and slurmd, and stops them by PID at the end.
    In CI (CI=true) a cluster that cannot start fails the slurm tests; elsewhere they are skipped
    with the reason."""

    def unavailable(reason: str):
        if in_ci():
            pytest.fail(f"SLURM test cluster: {reason}", pytrace=False)
        pytest.skip(f"SLURM test cluster: {reason}")

    if os.geteuid() != 0:
        unavailable("starting it needs root (apt-get, munged as user munge, slurmd)")
    state = tmp_path_factory.mktemp("slurm")
    t0 = time.monotonic()
    proc = subprocess.run(["bash", str(SLURM_CLUSTER), "start", str(state)], capture_output=True, text=True,
                          timeout=900, stdin=subprocess.DEVNULL)
    seconds = time.monotonic() - t0

    def stop():
        subprocess.run(["bash", str(SLURM_CLUSTER), "stop", str(state)], capture_output=True, text=True,
                       timeout=300, stdin=subprocess.DEVNULL)

    if proc.returncode != 0:
        stop()
        unavailable(f"{SLURM_CLUSTER.name} start failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    print(f"\nSLURM test cluster up in {seconds:.1f} s ({state})")
    try:
        yield SimpleNamespace(state=state, conf=state / "slurm.conf", start_seconds=seconds,
                              env={**os.environ, "SLURM_CONF": str(state / "slurm.conf")})
    finally:
        stop()
