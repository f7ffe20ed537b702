import json
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


def _read_only_view(rw: Path, ro: Path) -> str:
    """Show ``rw`` at ``ro`` read-only: a read-only bind mount (enforced for root too), else (no
    mount rights) the tree's write bits removed, which binds every user but root. Returns how."""
    ro.mkdir()
    bind = subprocess.run(["mount", "--bind", str(rw), str(ro)], capture_output=True, text=True)
    if bind.returncode == 0:
        again = subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], capture_output=True, text=True)
        if again.returncode == 0:
            return "mount"
        subprocess.run(["umount", "-l", str(ro)], capture_output=True)
    ro.rmdir()
    for p in [rw, *rw.rglob("*")]:
        if not p.is_symlink():
            p.chmod(p.stat().st_mode & ~0o222)
    ro.symlink_to(rw, target_is_directory=True)
    return "chmod"


_CONFIG = []  # this process's pytest config (pytest_configure)


def pytest_configure(config):
    _CONFIG.append(config)


def _run_root(tmp_path_factory) -> Path:
    """The folder every pytest-xdist worker of this run shares: the controller's base temp, of
    which each worker's base temp is a subfolder (``popen-gwN``)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if _CONFIG and hasattr(_CONFIG[-1], "workerinput") else base


def once_per_run(tmp_path_factory, name: str, build) -> dict:
    """``build(folder)``'s JSON-able result, computed once per pytest run however many xdist workers
    ask: the first takes ``<run root>/<name>.lock`` and builds; the others wait on the lock and read
    the result it left (``<name>.json``). A failed build is recorded too, so the other workers fail
    at once with its message instead of building again."""
    from filelock import FileLock

    root = _run_root(tmp_path_factory)
    done = root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if not done.exists():
            try:
                result = {"ok": build(root / name)}
            except BaseException as exc:
                done.write_text(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
                raise
            done.write_text(json.dumps(result))
    result = json.loads(done.read_text())
    if "error" in result:
        pytest.fail(f"{name} failed in another worker: {result['error']}", pytrace=False)
    return result["ok"]


def apt_lock(tmp_path_factory):
    """One apt-get at a time across xdist workers (dpkg's own lock refuses a second one)."""
    from filelock import FileLock

    return FileLock(str(_run_root(tmp_path_factory) / "apt.lock"))


def _ro_record(tmp_path_factory) -> Path:
    return _run_root(tmp_path_factory) / "read-only-views.txt"


@pytest.fixture(scope="session")
def shared(tmp_path_factory):
    """The tiny AT experiment (``tiny``, params.yaml) and the tiny GAN experiment (``tinygan``,
    params-gan.yaml), run once per pytest run (however many xdist workers) by one real
    ``snakemake -c2`` in a git + DVC project.

    Every test that only reads results reads this tree: ``shared.path`` is read-only (a read-only
    bind mount; writing raises OSError). A test that must change or break something works on
    ``shared.copy(dest)``, a file copy of the finished tree (not a rerun). The kill-and-resume,
    ``dvc repro`` and SLURM tests compare their runs against it. Every job appended the modules it
    loaded to ``shared.modules`` (DORACLE_MODULES_LOG; each job in its own
    interpreter: DORACLE_FORKSERVER=0). The view is undone at the end of the run
    (pytest_sessionfinish)."""

    def build(base: Path) -> dict:
        from project import gan_params, make_project, run, shared_params

        base.mkdir()
        rw = make_project(base / "rw", shared_params(), extra={"params-gan.yaml": gan_params()})
        t0 = time.monotonic()
        # every job in an interpreter of its own (no fork server): the module lists are the jobs' own
        # (tests/test_forkserver.py checks the server's preloads against them); the other runs fork
        proc = run(["snakemake", "-c2"], rw, env={"DORACLE_MODULES_LOG": str(base / "modules.jsonl"),
                                                  "DORACLE_FORKSERVER": "0"}, timeout=1500)
        seconds = time.monotonic() - t0
        how = _read_only_view(rw, base / "ro")
        with open(_ro_record(tmp_path_factory), "a") as fh:
            fh.write(f"{how}\t{base / 'ro'}\t{rw}\n")
        print(f"\nshared tiny run (AT + GAN): snakemake -c2 {seconds:.0f} s; read-only by {how}")
        return {"base": str(base), "output": proc.stdout + proc.stderr, "seconds": seconds, "how": how}

    from project import copy_project

    info = once_per_run(tmp_path_factory, "shared", build)
    base = Path(info["base"])
    return SimpleNamespace(path=base / "ro", output=info["output"], seconds=info["seconds"],
                           modules=base / "modules.jsonl", read_only_by=info["how"],
                           copy=lambda dest: copy_project(base / "ro", Path(dest)))


def pytest_sessionfinish(session):
    """Undo the shared run's read-only view once every worker is done (the controller, or a run
    without xdist): unmount the bind mount, or give the tree its write bits back."""
    if hasattr(session.config, "workerinput"):
        return
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None:
        return
    record = factory.getbasetemp() / "read-only-views.txt"
    if not record.exists():
        return
    for line in record.read_text().splitlines():
        how, ro, rw = line.split("\t")
        if how == "mount":
            subprocess.run(["umount", "-l", ro], capture_output=True)
        else:
            for p in [Path(rw), *Path(rw).rglob("*")]:
                if not p.is_symlink():
                    p.chmod(p.stat().st_mode | 0o200)


@pytest.fixture
def shared_copy(shared, tmp_path):
    """A writable copy of the shared run's finished project, for this test alone."""
    return shared.copy(tmp_path / "proj")


@pytest.fixture(scope="session")
def shared_dvc(tmp_path_factory):
    """The shared run's two experiments regenerated by ``dvc repro``, each in a project of its own
    (``.at``, ``.gan``; compared with the Snakemake run: the same bytes). DVC runs one stage at a
    time, so the two projects run side by side. Once per pytest run, like ``shared``."""

    def build(base: Path) -> dict:
        from project import gan_params, make_project, shared_params

        base.mkdir()
        projects = {"at": make_project(base / "at", shared_params()), "gan": make_project(base / "gan", gan_params())}
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
        procs = {k: subprocess.Popen(["dvc", "repro", "-q"], cwd=p, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True) for k, p in projects.items()}
        for k, proc in procs.items():
            out, _ = proc.communicate(timeout=1500)
            assert proc.returncode == 0, f"dvc repro ({k}) failed:\n{out[-4000:]}"
        return {k: str(p) for k, p in projects.items()}

    return SimpleNamespace(**{k: Path(v) for k, v in once_per_run(tmp_path_factory, "shared-dvc", build).items()})


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
    with apt_lock(tmp_path_factory):  # it may apt-get install, as the chromium fixture may in another worker
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
def chromium(tmp_path_factory):
    """A headless Chromium (Debian's package, installed by apt-get when missing and running as root)
    driven by Playwright (the test extra) through its executable: no browser download. In CI
    (CI=true) a browser that cannot start fails the tests; elsewhere they are skipped with the reason."""

    def unavailable(reason: str):
        if in_ci():
            pytest.fail(f"headless Chromium: {reason}", pytrace=False)
        pytest.skip(f"headless Chromium: {reason}")

    with apt_lock(tmp_path_factory):
        exe = shutil.which("chromium") or _install_chromium(unavailable)
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


def _install_chromium(unavailable) -> str:
    """apt-get install Debian's chromium (root only); its path."""
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
    return exe
