import os
import shutil
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


@pytest.fixture(scope="session")
def chromium():
    """A headless Chromium (Debian's package, installed by apt-get when missing and running as root)
    driven by Playwright (the test extra) through its executable: no browser download. In CI
    (CI=true) a browser that cannot start fails the tests; elsewhere they are skipped with the reason."""

    def unavailable(reason: str):
        if in_ci():
            pytest.fail(f"headless Chromium: {reason}", pytrace=False)
        pytest.skip(f"headless Chromium: {reason}")

    exe = shutil.which("chromium")
    if exe is None:
        if os.geteuid() != 0:
            unavailable("not installed (apt-get install chromium chromium-driver), and installing it needs root")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]
        proc = subprocess.run(install, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=900)
        if proc.returncode != 0:  # a fresh machine has no package lists yet
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
            proc = subprocess.run(install, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL,
                                  timeout=900)
        exe = shutil.which("chromium")
        if exe is None:
            unavailable(f"apt-get install chromium failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is missing (pip install -e '.[test]')")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=exe, args=["--headless", "--no-sandbox", "--disable-gpu"])
        try:
            yield browser
        finally:
            browser.close()
