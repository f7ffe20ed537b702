"""doracle.forkserver: torch jobs forked from a warm server write what they write run in a fresh
interpreter, exit as they would (codes, messages, signals), and the server imports only what every
such job imports. Each test here runs its own server in a private folder (XDG_RUNTIME_DIR)."""

from __future__ import annotations

import fcntl
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml

from doracle import artifacts, forkserver
from project import body, params_with

LOG_LINE = "job {pid}: "


@pytest.fixture(scope="module")
def server_env():
    """An environment whose routed commands use a server of their own (started here, waited for)."""
    base = tempfile.mkdtemp(prefix="fs-", dir="/tmp")  # short: a socket's path holds 108 bytes
    env = dict(os.environ)
    env.update({"XDG_RUNTIME_DIR": str(base), forkserver.ENV: "1", forkserver.IDLE_ENV: "600"})
    path = subprocess.run([sys.executable, "-c", "import os; from doracle import forkserver; "
                           "print(forkserver.socket_path(os.environ))"], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()
    proc = subprocess.Popen([sys.executable, "-m", "doracle.forkserver", path], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while "serving" not in _log(path):
        assert proc.poll() is None and time.time() < deadline, _log(path)
        time.sleep(0.05)
    yield {"env": env, "socket": path, "pid": proc.pid}
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)
    assert "stopped" in _log(path) and not Path(path).exists()
    shutil.rmtree(base)


def _log(socket_path: str) -> str:
    p = Path(socket_path + ".log")
    return p.read_text() if p.exists() else ""


def _doracle(args, env, cwd, **kw):
    return subprocess.run([sys.executable, "-m", "doracle", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, **kw)


def _forked_pid(socket_path: str, command: str, before: int, timeout: float = 60) -> int:
    """The pid of the first job the server's log names after its first ``before`` characters."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for line in _log(socket_path)[before:].splitlines():
            if line.endswith(f": {command}") and " job " in line:
                return int(line.split(" job ")[1].split(":")[0])
        time.sleep(0.02)
    raise AssertionError(f"no {command} job in the server's log:\n{_log(socket_path)}")


def _payoff_argv(shared, out: Path) -> list[str]:
    """The shared run's first payoff job, writing to ``out`` (and its log beside it)."""
    for line in shared.modules.read_text().splitlines():
        argv = json.loads(line)["argv"]
        if argv[:2] == ["do", "payoff"]:
            argv = list(argv)
            argv[argv.index("--out") + 1] = str(out)
            argv[argv.index("--log") + 1] = str(out.with_suffix(".log"))
            return argv
    raise AssertionError("the shared run logged no payoff job")


def test_the_switches():
    assert forkserver.routed(["do", "payoff", "--params", "p"]) and forkserver.routed(["evaluate", "--out", "x"])
    assert not forkserver.routed(["do", "solve"]) and not forkserver.routed(["metrics"]) and not forkserver.routed([])
    on = {"PATH": "/bin"}
    assert forkserver.enabled(on) == (sys.platform == "linux")
    for off in ({forkserver.ENV: "0"}, {"SLURM_JOB_ID": "7"}):
        assert not forkserver.enabled({**on, **off}), off
    # measured and unmeasured commands (coverage.py's subprocess hook) do not share a server
    assert forkserver.key({"COVERAGE_PROCESS_START": "rc"}) != forkserver.key({})
    # a variable that changes what torch's import does gets a server of its own; others share one
    assert forkserver.key({"OMP_NUM_THREADS": "1"}) != forkserver.key({"OMP_NUM_THREADS": "2"})
    assert forkserver.key({"HOME": "/a", "PYTEST_CURRENT_TEST": "x"}) == forkserver.key({"HOME": "/b"})


def test_a_folder_others_can_write_is_not_used(tmp_path, monkeypatch):
    bad = tmp_path / f"doracle-forkserver-{os.getuid()}"
    bad.mkdir(mode=0o777)
    bad.chmod(0o777)
    with pytest.raises(OSError, match="not a folder of this user's alone"):
        forkserver.folder({"XDG_RUNTIME_DIR": str(tmp_path)})
    # the command then runs the job itself (forward: None), and starts no server there
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert forkserver.forward(["doracle", "evaluate"]) is None
    assert list(bad.iterdir()) == []


def test_a_changed_preloaded_file_is_noticed(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("x = 1\n")
    st = f.stat()
    files = {str(f): (st.st_mtime_ns, st.st_size)}
    assert forkserver.changed(files) == []
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 1000))
    assert forkserver.changed(files) == [str(f)]
    f.unlink()
    assert forkserver.changed(files) == [str(f)]


@pytest.mark.slow
def test_routed_commands_and_preloaded_modules_match_the_jobs_own(shared):
    """From the shared run (every job run in its own interpreter): the routed commands are exactly
    those whose jobs import torch, and every module the server preloads, doracle's and others',
    every routed job imports itself (so a forked job has the modules a fresh one would)."""
    recs = [json.loads(line) for line in shared.modules.read_text().splitlines()]
    assert recs and not any(r["forked"] for r in recs)
    cmds = {}
    for r in recs:
        cmds.setdefault(tuple(r["argv"][:2]) if r["argv"][0] == "do" else tuple(r["argv"][:1]), []).append(r)
    assert {c for c, rs in cmds.items() if all("torch" in r["packages"] for r in rs)} == forkserver.ROUTED
    assert not [c for c, rs in cmds.items() if c not in forkserver.ROUTED and any("torch" in r["packages"] for r in rs)]
    probe = subprocess.run([sys.executable, "-c",
                            "import json, sys, fcntl, selectors, time\nfrom doracle import forkserver, provenance\n"
                            "[__import__(n) for n in forkserver.PRELOAD]\n"
                            "print(json.dumps([provenance.loaded_modules(), sorted({n.partition('.')[0] for n in "
                            "sys.modules} - {'doracle'})]))"], capture_output=True, text=True, check=True)
    modules, packages = json.loads(probe.stdout)
    assert "models/small.py" in modules and "torch" in packages
    for c in forkserver.ROUTED:
        for r in cmds[c]:
            assert not set(modules) - set(r["modules"]), (c, sorted(set(modules) - set(r["modules"])))
            assert not set(packages) - set(r["packages"]) - {"__main__"}, (c, set(packages) - set(r["packages"]))


@pytest.mark.slow
def test_a_job_through_the_server_writes_what_it_writes_on_its_own(shared, server_env, tmp_path):
    """The shared run's first payoff job, once in its own interpreter and once forked by the server:
    the same bytes (but the timing block), the job logged by the server, marked forked, and its
    recorded age (timing.process_seconds) its own, not the server's."""
    env, sock = server_env["env"], server_env["socket"]
    modlog = tmp_path / "modules.jsonl"
    here = _doracle(_payoff_argv(shared, tmp_path / "here.json"), {**env, forkserver.ENV: "0",
                                                                   "DORACLE_MODULES_LOG": str(modlog)}, shared.path)
    assert here.returncode == 0, here.stderr
    before = len(_log(sock))
    t0 = time.monotonic()
    forked = _doracle(_payoff_argv(shared, tmp_path / "forked.json"), {**env, "DORACLE_MODULES_LOG": str(modlog)},
                      shared.path)
    took = time.monotonic() - t0
    assert forked.returncode == 0, forked.stderr
    assert "payoff done" in forked.stderr + forked.stdout  # its standard streams are the command's
    pid = _forked_pid(sock, "do payoff", before)
    assert f"job {pid}: exit 0" in _log(sock), _log(sock)
    assert body(tmp_path / "here.json") == body(tmp_path / "forked.json"), (here.stderr, forked.stderr)
    # its age is its own (from the fork), not the server's
    forked_s = json.loads((tmp_path / "forked.json").read_text())["timing"]["process_seconds"]
    assert 0 < forked_s < took + 0.05, (forked_s, took)
    assert [json.loads(line)["forked"] for line in modlog.read_text().splitlines()] == [False, True], _log(sock)


@pytest.mark.slow
def test_bad_input_through_the_server_exits_2_naming_it(server_env, tmp_path):
    env, sock = server_env["env"], server_env["socket"]
    before = len(_log(sock))
    proc = _doracle(["do", "payoff", "--params", tmp_path / "nope.yaml", "--data", "d", "--state", "s",
                     "--iteration", "1", "--row", "r", "--col", "c", "--out", tmp_path / "o.json"], env, tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "nope.yaml" in proc.stderr and "Traceback" not in proc.stderr
    assert _forked_pid(sock, "do payoff", before)


def test_a_forwarded_command_has_its_own_signal_handlers_back_once_its_job_ends(server_env, tmp_path):
    """While its job runs the command passes signals on to it; once the job has ended (its exit
    handlers still to run) a signal is the command's own again, not one for a pid that may be reused."""
    # the command's own handlers (set here: what a test process inherits varies, e.g. SIGINT ignored
    # in a shell's background job)
    code = ("import signal, sys; from doracle import forkserver\n"
            "def own(*_): pass\n"
            "signal.signal(signal.SIGTERM, own); signal.signal(signal.SIGINT, own)\n"
            "rc = forkserver.forward(sys.argv[1:])\n"
            "print(rc, signal.getsignal(signal.SIGTERM) is own, signal.getsignal(signal.SIGINT) is own)")
    argv = ["doracle", "evaluate", "--params", tmp_path / "nope.yaml", "--data", "d", "--model", "m", "--out", "o"]
    proc = subprocess.run([sys.executable, "-c", code, *map(str, argv)], env=server_env["env"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.stdout.split() == ["2", "True", "True"], proc.stderr
    assert "nope.yaml" in proc.stderr


@pytest.mark.slow
def test_signals_reach_the_job_and_a_killed_command_takes_its_job_along(shared, server_env, tmp_path):
    """SIGTERM to the command preempts the forked best response (exit 75, its state saved); SIGKILL to
    the job makes the command die by SIGKILL; SIGKILL to the command kills the job. The job has the
    command's resource limits, and ignores what the command ignores: under nohup (SIGHUP ignored) a
    hangup does not reach it."""
    from doracle.defenses.resume import checkpoint_path
    from doracle.errors import EXIT_PREEMPTED

    env, sock = server_env["env"], server_env["socket"]
    res = shared.path / "results" / "tiny"
    pf = tmp_path / "params.yaml"
    pf.write_text(yaml.safe_dump(params_with({"do": {"defender": {"epochs": 40}}})))

    files_limit = min(777, resource.getrlimit(resource.RLIMIT_NOFILE)[0])

    def command_setup(nohup: bool):
        def setup():
            resource.setrlimit(resource.RLIMIT_NOFILE, (files_limit, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
            signal.signal(signal.SIGHUP, signal.SIG_IGN if nohup else signal.SIG_DFL)
        return setup

    def start(out: Path, nohup: bool = False):
        before = len(_log(sock))
        proc = subprocess.Popen([sys.executable, "-m", "doracle", "do", "best-response", "--player", "defender",
                                 "--params", str(pf), "--data", str(res / "data/dataset.safetensors"),
                                 "--state", str(res / "do/it001/population.json"), "--iteration", "2",
                                 "--out", str(out)], cwd=shared.path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, preexec_fn=command_setup(nohup))
        pid = _forked_pid(sock, "do best-response", before)
        # the job runs under the command's limits (ulimit), not the server's
        deadline = time.time() + 30
        while not re.search(rf"Max open files\s+{files_limit}\s", limits := Path(f"/proc/{pid}/limits").read_text()):
            assert time.time() < deadline, limits
            time.sleep(0.01)
        deadline += 300
        while not checkpoint_path(out).with_suffix(".json").exists():
            assert proc.poll() is None and time.time() < deadline, proc.communicate()
            time.sleep(0.02)
        return proc, pid

    def gone(pid: int) -> bool:
        deadline = time.time() + 30
        while artifacts.pid_alive(pid) and time.time() < deadline:
            time.sleep(0.02)
        return not artifacts.pid_alive(pid)

    def ignores_hup(pid: int) -> bool:
        mask = int(re.search(r"SigIgn:\s+([0-9a-f]+)", Path(f"/proc/{pid}/status").read_text())[1], 16)
        return bool(mask & (1 << (signal.SIGHUP - 1)))

    proc, pid = start(tmp_path / "a" / "defender.safetensors", nohup=True)
    assert ignores_hup(pid)
    proc.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert proc.poll() is None and artifacts.pid_alive(pid), "a hangup under nohup stopped the job"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_PREEMPTED, err
    assert f"job {pid}: exit {EXIT_PREEMPTED}" in _log(sock)

    proc, pid = start(tmp_path / "b" / "defender.safetensors")
    assert not ignores_hup(pid)
    os.kill(pid, signal.SIGKILL)
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL

    proc, pid = start(tmp_path / "c" / "defender.safetensors")
    proc.kill()
    proc.wait()
    assert gone(pid), f"job {pid} outlived its killed command"
    assert f"job {pid}: its command was killed" in _log(sock)
    assert not (tmp_path / "c" / "defender.safetensors").exists()


@pytest.mark.slow
def test_an_idle_server_exits_and_the_next_command_runs_its_job_itself(tmp_path):
    """With no server the command runs the job here and starts one in the background; that one
    serves the next command, and exits (its socket removed) after DORACLE_FORKSERVER_IDLE seconds
    without a job; the next one's log is its own. A folder whose socket path would be too long is
    not used (the job runs here)."""
    long = {"XDG_RUNTIME_DIR": str(tmp_path / ("x" * 90))}
    Path(long["XDG_RUNTIME_DIR"]).mkdir()
    with pytest.raises(OSError, match="too long for a socket"):
        forkserver.socket_path(long)
    run = Path(tempfile.mkdtemp(prefix="fs-", dir="/tmp"))
    env = dict(os.environ)
    env.update({"XDG_RUNTIME_DIR": str(run), forkserver.ENV: "1", forkserver.IDLE_ENV: "6"})
    args = ["evaluate", "--params", tmp_path / "missing.yaml", "--data", "d", "--model", "m", "--out", tmp_path / "o"]
    first = _doracle(args, env, tmp_path)
    assert first.returncode == 2 and "missing.yaml" in first.stderr
    folder = run / f"doracle-forkserver-{os.getuid()}"
    deadline = time.time() + 120
    while not list(folder.glob("*.sock")):
        assert time.time() < deadline, "no server was started"
        time.sleep(0.05)
    sock = str(next(folder.glob("*.sock")))
    second = _doracle(args, env, tmp_path)
    assert second.returncode == 2 and "missing.yaml" in second.stderr
    assert ": evaluate" in _log(sock)
    server = int(re.search(r"serving .* \(pid (\d+),", _log(sock))[1])
    while artifacts.pid_alive(server):  # its socket goes first, then it logs and leaves
        assert time.time() < deadline + 60, "the idle server did not exit"
        time.sleep(0.1)
    assert not Path(sock).exists() and _log(sock).rstrip().endswith("stopped")
    # the next server's log is its own life, not every server's before it
    assert _doracle(args, env, tmp_path).returncode == 2
    while "serving" not in _log(sock) or ": evaluate" in _log(sock):
        assert time.time() < deadline + 120, _log(sock)
        time.sleep(0.05)
    assert _log(sock).count("serving") == 1
    while Path(sock).exists():  # idle again: it goes
        assert time.time() < deadline + 180, "the idle server did not exit"
        time.sleep(0.1)
    shutil.rmtree(run)


@pytest.mark.slow
def test_a_job_dies_with_its_server_and_its_command_says_so(shared, tmp_path):
    """A server killed outright takes its running jobs along (nothing goes on writing behind a
    rerun), and their commands exit 1 saying the job's status is lost."""
    run = Path(tempfile.mkdtemp(prefix="fs-", dir="/tmp"))
    env = dict(os.environ)
    env.update({"XDG_RUNTIME_DIR": str(run), forkserver.ENV: "1", forkserver.IDLE_ENV: "60"})
    sock = subprocess.run([sys.executable, "-c", "import os; from doracle import forkserver; "
                           "print(forkserver.socket_path(os.environ))"], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()
    server = subprocess.Popen([sys.executable, "-m", "doracle.forkserver", sock], env=env, start_new_session=True)
    deadline = time.time() + 120
    while not Path(sock).exists():
        assert server.poll() is None and time.time() < deadline
        time.sleep(0.05)
    res = shared.path / "results" / "tiny"
    pf = tmp_path / "params.yaml"
    pf.write_text(yaml.safe_dump(params_with({"do": {"defender": {"epochs": 400}}})))  # about two minutes
    proc = subprocess.Popen([sys.executable, "-m", "doracle", "do", "best-response", "--player", "defender",
                             "--params", str(pf), "--data", str(res / "data/dataset.safetensors"),
                             "--state", str(res / "do/it001/population.json"), "--iteration", "2",
                             "--out", str(tmp_path / "d.safetensors")], cwd=shared.path, env=env,
                            stdout=subprocess.DEVNULL, stderr=(tmp_path / "err.txt").open("w"))
    pid = _forked_pid(sock, "do best-response", 0)
    server.kill()
    server.wait()
    proc.wait(timeout=60)
    err = (tmp_path / "err.txt").read_text()  # a file, not a pipe: the job could write on
    assert proc.returncode == 1 and "the fork server stopped" in err, err
    deadline = time.time() + 10
    while artifacts.pid_alive(pid):
        assert time.time() < deadline, f"job {pid} outlived its server"
        time.sleep(0.02)
    shutil.rmtree(run)


def test_a_server_started_while_the_last_one_leaves_waits_for_its_lock(tmp_path):
    """The lock is held for a server's life, and its socket is removed before its last lines are
    logged: a server started in that moment (a command found no socket) waits for the lock, then
    serves, instead of leaving the next commands without one. One whose rival serves (the socket
    is there) leaves at once."""
    run = Path(tempfile.mkdtemp(prefix="fs-", dir="/tmp"))
    env = {**os.environ, "XDG_RUNTIME_DIR": str(run), forkserver.ENV: "1", forkserver.IDLE_ENV: "60"}
    path = forkserver.socket_path(env)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a leaving server's
        proc = subprocess.Popen([sys.executable, "-m", "doracle.forkserver", path], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.5)
        assert proc.poll() is None, "the new server gave up while the old one was leaving"
        assert not Path(path + ".log").exists()
    deadline = time.time() + 120
    while "serving" not in _log(path):
        assert proc.poll() is None and time.time() < deadline, _log(path)
        time.sleep(0.05)
    rival = subprocess.run([sys.executable, "-m", "doracle.forkserver", path], env=env, timeout=60)
    assert rival.returncode == 0 and "serving" in _log(path) and _log(path).count("serving") == 1
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0 and _log(path).rstrip().endswith("stopped")
    shutil.rmtree(run)


def test_a_command_under_nice_or_taskset_gets_a_server_of_its_own_with_its_cpus_and_priority(tmp_path):
    """The server's key holds the command's CPU affinity and nice value, so a ``nice`` or ``taskset``
    run gets a server of its own, started by one of its commands, whose jobs run as the command
    asked (not at another run's priority, on another run's CPUs)."""
    run = Path(tempfile.mkdtemp(prefix="fs-", dir="/tmp"))
    env = {**os.environ, "XDG_RUNTIME_DIR": str(run), forkserver.ENV: "1", forkserver.IDLE_ENV: "60"}
    cpu = min(os.sched_getaffinity(0))

    def key(nice: int = 0, pin: bool = False, args=("-c", "import os; from doracle import forkserver; "
                                                   "print(forkserver.socket_path(os.environ))")):
        def setup():
            os.nice(nice)
            if pin:
                os.sched_setaffinity(0, {cpu})
        return subprocess.run([sys.executable, *args], env=env, cwd=tmp_path, capture_output=True, text=True,
                              preexec_fn=setup, timeout=300)

    plain, niced, pinned = (key().stdout, key(nice=5).stdout, key(pin=True).stdout)
    assert plain == key().stdout and niced != plain
    assert (pinned != plain) == (len(os.sched_getaffinity(0)) > 1)  # pinned to one of several CPUs
    # a niced command's server (started by it) runs at its priority, and so its jobs
    args = ["-m", "doracle", "evaluate", "--params", str(tmp_path / "nope.yaml"), "--data", "d", "--model", "m",
            "--out", str(tmp_path / "o")]
    assert key(nice=5, args=args).returncode == 2
    sock = niced.strip()
    deadline = time.time() + 120
    while "serving" not in _log(sock):
        assert time.time() < deadline, "no server was started"
        time.sleep(0.05)
    server = int(re.search(r"serving .* \(pid (\d+),", _log(sock))[1])
    assert int(Path(f"/proc/{server}/stat").read_text().rsplit(")", 1)[1].split()[16]) == os.getpriority(
        os.PRIO_PROCESS, 0) + 5
    os.kill(server, signal.SIGTERM)
    while artifacts.pid_alive(server):
        assert time.time() < deadline + 60, "the server did not stop"
        time.sleep(0.05)
    shutil.rmtree(run)
