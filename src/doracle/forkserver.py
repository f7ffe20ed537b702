"""The ``doracle`` command's first step, and a fork server for the local pipeline's torch jobs.

A job that needs torch spends about 1.7 s of its start-up importing torch and the doracle modules
every such job loads (bench/bench_startup.py); a local run of the main job has about sixty such
jobs on two cores. So on a local machine the command of such a job (:data:`ROUTED`) asks a server
that has imported them once (:data:`PRELOAD`) to fork a child that runs the command, and waits for
it: the child starts in a few hundredths of a second. Everything else runs in this interpreter, as
does every job when there is no server to ask:

* the first routed job with no server up starts one in the background (``python -m
  doracle.forkserver SOCKET``) and runs here, as do the jobs that start while that server imports;
* off with ``DORACLE_FORKSERVER=0``, on SLURM (``SLURM_JOB_ID``: each job its own allocation) and
  outside Linux. Under coverage.py's subprocess measurement (``COVERAGE_PROCESS_START``) the server
  is measured as a process of its own, and each forked job writes its own data file (coverage.py
  starts a new one when the pid changes; the job's exit handlers save it).

What the job sees is what a fresh interpreter would give it: the command's argv, working folder,
environment, umask, ``sys.path`` and standard streams (passed as file descriptors, so ``> log``
redirections and terminals work), and the modules: the server has imported only what every routed
job imports (tests/test_forkserver.py checks :data:`PRELOAD` and :data:`ROUTED` against the jobs'
own module lists), and refuses to fork once a preloaded doracle file changed on disk (it then
exits; the next job starts a fresh one). The command returns the child's exit status (dying by the
same signal when the child did); SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGTSTP and
SIGCONT sent to the command are passed on to the child, except those the command ignores (nohup's
SIGHUP, SIGINT in a script's background job), which the child ignores too, as a job started in
the command's own interpreter would. A command killed outright (SIGKILL) takes
its child with it, a moment later (the server kills it when the command's connection closes: a
test that kills a job and at once looks at its files runs it with the server off), and a child
dies with its server.

One server per user, interpreter, ``sys.path``, torch-relevant environment, CPU affinity and nice
value (:func:`key`), in ``$XDG_RUNTIME_DIR`` (else ``$TMPDIR`` or /tmp) under
``doracle-forkserver-<uid>/`` (mode 0700), with its log (the current server's jobs and exit
codes) and lock file beside its socket. It exits after ``DORACLE_FORKSERVER_IDLE`` seconds
(default 30) without a job, or on SIGTERM once its jobs have finished. A server started while another holds the lock leaves at once when that one serves
(its socket is there), else waits for the lock (:data:`LOCK_WAIT_SECONDS`: the other is starting,
or leaving with its socket already removed).

Differences to a fresh process: Snakemake's benchmark files time the command, so their wall
seconds are the job's, but their memory and CPU columns are the waiting command's (set
``DORACLE_FORKSERVER=0`` to measure a job's memory locally; cluster jobs never use the server);
SIGSTOP to the command's process group does not stop the job (SIGTSTP does); ``ps`` shows a
job under the server's command line.

Standard library (and doracle.errors, itself standard library only) at import: this module is the
console script's entry point.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import json
import os
import random
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback

from doracle.errors import leave

ENV = "DORACLE_FORKSERVER"
IDLE_ENV = "DORACLE_FORKSERVER_IDLE"
#: how long a new server waits for the lock of one without a socket (starting, or leaving)
LOCK_WAIT_SECONDS = 30
IDLE_SECONDS = 30.0

#: the commands whose jobs need torch (tests check: exactly those whose jobs load it)
ROUTED = frozenset({("train",), ("evaluate",), ("do", "init"), ("do", "best-response"), ("do", "payoff"),
                    ("do", "close")})

#: what the server imports: modules every routed job imports anyway (tests check: a subset of each
#: routed job's own modules, in a real run). The doracle modules pull in torch, numpy, pydantic,
#: safetensors, yaml and tqdm.
PRELOAD = ("doracle.cli", "doracle.cli.pipeline", "doracle.config", "doracle.artifacts", "doracle.runtime",
           "doracle.engine.loop", "doracle.engine.solvers", "doracle.engine.pruning", "doracle.games.graph",
           "doracle.games.classifiers", "doracle.games.nas", "doracle.models", "doracle.models.mixture",
           "doracle.models.gan", "doracle.defenses.training", "doracle.defenses.resume", "doracle.data",
           "doracle.data.augment", "torch", "numpy", "safetensors.torch", "pydantic", "yaml", "tqdm")

#: environment variables that change what an import does (thread pools, devices, paths, hashing):
#: clients that differ in them get servers of their own
KEY_PREFIXES = ("CUDA", "NVIDIA", "TORCH", "PYTORCH", "OMP_", "MKL", "KMP_", "GOMP", "OPENBLAS", "LD_",
                "PYTHON", "HIP", "ROCM", "XLA", "DORACLE_FORKSERVER", "COVERAGE")

#: resource limits (ulimit) the command's job keeps: the child sets the command's own
RLIMITS = ("RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_RSS", "RLIMIT_CPU", "RLIMIT_FSIZE", "RLIMIT_NOFILE", "RLIMIT_CORE",
           "RLIMIT_STACK", "RLIMIT_NPROC", "RLIMIT_MEMLOCK")

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
#: what the command handles for its job: the forwarded signals and job control (Ctrl-Z, fg)
_HANDLED = (*FORWARDED, signal.SIGTSTP, signal.SIGCONT)
_HEADER = struct.Struct("!Q")

#: True in a job the server forked (recorded in DORACLE_MODULES_LOG's lines)
FORKED = False


def run() -> None:
    """The ``doracle`` console script (and ``python -m doracle``): a routed job through the fork
    server when one answers, else :func:`doracle.cli.run` here."""
    if routed(sys.argv[1:]) and enabled(os.environ):
        rc = forward(sys.argv)
        if rc is not None:
            leave(rc)
    # numpy, the job table, argparse: not for a forwarded job
    from doracle.cli import run as run_here

    run_here()


def routed(args: list[str]) -> bool:
    return tuple(args[:1]) in ROUTED or tuple(args[:2]) in ROUTED


def enabled(env) -> bool:
    return (sys.platform == "linux" and env.get(ENV, "1") != "0" and "SLURM_JOB_ID" not in env
            and hasattr(os, "pidfd_open") and hasattr(socket, "send_fds"))


def key(env) -> str:
    """What a server is shared by: the user, the interpreter, ``sys.path`` (its first entry, the
    script's or working folder, excepted: the child gets the command's own), :data:`KEY_PREFIXES`,
    and the CPUs and priority the command runs with (``taskset``, ``nice``): a server, started by a
    command of its key, has them, and so have its jobs."""
    doc = {"uid": os.getuid(), "python": sys.executable, "path": sys.path[1:],
           "env": sorted((k, v) for k, v in env.items() if k.startswith(KEY_PREFIXES)),
           "cpus": sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
           "nice": os.getpriority(os.PRIO_PROCESS, 0)}
    return hashlib.sha256(json.dumps(doc).encode()).hexdigest()[:16]


def folder(env) -> str:
    """The user's server folder, made mode 0700; OSError where it is not the user's alone."""
    base = env.get("XDG_RUNTIME_DIR") or env.get("TMPDIR") or "/tmp"
    path = os.path.join(base, f"doracle-forkserver-{os.getuid()}")
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if st.st_uid != os.getuid() or st.st_mode & 0o077 or not os.path.isdir(path) or os.path.islink(path):
        raise OSError(f"{path} is not a folder of this user's alone")
    return path


def socket_path(env) -> str:
    """The server's socket; OSError where the folder is unusable or the path too long for a socket."""
    path = os.path.join(folder(env), key(env) + ".sock")
    if len(os.fsencode(path)) > 100:  # sun_path holds 108 bytes
        raise OSError(f"{path} is too long for a socket")
    return path


# ----------------------------------------------------------------------------- the command's side


def _read(reader) -> dict | None:
    line = reader.readline()
    return json.loads(line) if line else None


def forward(argv: list[str]) -> int | None:
    """Run ``argv`` in a child of the server: its exit status, or None when nothing ran (no server,
    or it refused): the caller then runs the command itself."""
    env = dict(os.environ)
    try:
        path = socket_path(env)
    except OSError:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
    except OSError:
        conn.close()
        spawn(path, env)
        return None
    with conn:
        fds = []
        for fd in (0, 1, 2):
            try:
                os.fstat(fd)
                fds.append(fd)
            except OSError:  # a closed standard stream stays closed in the child
                pass
        umask = os.umask(0)
        os.umask(umask)
        # a signal the command ignores (nohup's SIGHUP, SIGINT in a script's background job) stays
        # ignored, here and in the job, as in a job run here
        ignored = [sig for sig in _HANDLED if signal.getsignal(sig) == signal.SIG_IGN]
        body = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": env, "umask": umask, "path": sys.path,
                           "fds": fds, "package": os.path.dirname(os.path.abspath(__file__)),
                           "rlimits": rlimits(), "ignored": [sig.name for sig in ignored]}).encode()
        job = {"pid": None, "pending": []}

        def pass_on(sig, _frame):  # a signal before the job has a pid waits for it
            if job["pid"] is None:
                job["pending"].append(sig)
                return
            try:
                os.kill(job["pid"], sig)
            except ProcessLookupError:
                pass
            if sig == signal.SIGTSTP:  # Ctrl-Z: the job stops, and so does the command (SIGCONT resumes both)
                os.kill(os.getpid(), signal.SIGSTOP)

        before = {sig: signal.signal(sig, pass_on) for sig in _HANDLED if sig not in ignored}
        try:
            socket.send_fds(conn, [_HEADER.pack(len(body))], fds)
            conn.sendall(body)
            reader = conn.makefile("rb")
            first = _read(reader)
        except OSError:
            first = None
        if first is None or "pid" not in first:  # refused (or gone) before it forked: nothing ran
            for sig, old in before.items():
                signal.signal(sig, old)
            for sig in job["pending"]:  # what arrived meanwhile, as if no server had been asked
                os.kill(os.getpid(), sig)
            return None
        job["pid"] = pid = first["pid"]
        for sig in job["pending"]:
            pass_on(sig, None)
        try:
            last = _read(reader)
        except OSError:
            last = None
        finally:  # the job is over: a signal now is the command's own (not a reused pid's)
            for sig, old in before.items():
                signal.signal(sig, old)
    if last is None:
        print(f"doracle: the fork server stopped while job {pid} ran, so its exit status is unknown; "
              f"rerun it (set {ENV}=0 to run jobs without the server)", file=sys.stderr)
        return 1
    rc = int(last["exit"])
    if rc < 0:  # the child died by a signal: so does the command
        sys.stdout.flush()
        sys.stderr.flush()
        if -rc not in (signal.SIGKILL, signal.SIGSTOP):  # those two cannot have a handler
            signal.signal(-rc, signal.SIG_DFL)
        os.kill(os.getpid(), -rc)
        return 128 - rc
    return rc


def rlimits() -> dict[str, list[int]]:
    return {name: list(resource.getrlimit(getattr(resource, name))) for name in RLIMITS if hasattr(resource, name)}


def rlimits_settable(wanted: dict[str, list[int]]) -> list[str]:
    """The limits of ``wanted`` this process could not take on (a hard limit above its own, where
    it may not raise one): a child given those would not run under the command's limits."""
    if os.geteuid() == 0:
        return []
    out = []
    for name, (_soft, hard) in wanted.items():
        own = resource.getrlimit(getattr(resource, name))[1]
        if own != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or hard > own):
            out.append(name)
    return out


def spawn(path: str, env) -> None:
    """Start a server for ``path`` in the background (its own session, no terminal); the first one
    to lock the path serves; a second exits once it sees the first's socket (:func:`main`)."""
    try:
        subprocess.Popen([sys.executable, "-m", "doracle.forkserver", path], env=env, cwd="/",
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True, close_fds=True)
    except OSError:
        pass


# ----------------------------------------------------------------------------- the server's side


def _preloaded_files() -> dict[str, tuple[int, int]]:
    from doracle.provenance import module_files  # preloaded (the server's side only)

    return {f: ((st := os.stat(f)).st_mtime_ns, st.st_size) for f in module_files()}


def changed(files: dict[str, tuple[int, int]]) -> list[str]:
    """The preloaded doracle files that are no longer what the server imported."""
    out = []
    for f, sig in files.items():
        try:
            st = os.stat(f)
        except OSError:
            out.append(f)
            continue
        if (st.st_mtime_ns, st.st_size) != sig:
            out.append(f)
    return out


def _recv_request(conn: socket.socket) -> tuple[dict, list[int]]:
    conn.settimeout(10.0)
    head, fds, _flags, _addr = socket.recv_fds(conn, _HEADER.size, 3)
    while len(head) < _HEADER.size:
        more = conn.recv(_HEADER.size - len(head))
        if not more:
            raise OSError("request cut short")
        head += more
    (n,) = _HEADER.unpack(head)
    body = b""
    while len(body) < n:
        more = conn.recv(min(1 << 20, n - len(body)))
        if not more:
            raise OSError("request cut short")
        body += more
    conn.settimeout(None)
    return json.loads(body), fds


def _send(conn: socket.socket, doc: dict) -> None:
    try:
        conn.sendall((json.dumps(doc) + "\n").encode())
    except OSError:
        pass


def _child(req: dict, fds: list[int], close: list) -> None:
    """In the forked child: become the command's process, run it, and never return."""
    rc = 1
    try:
        for obj in close:  # the server's sockets, selector, files and other jobs' pidfds
            try:
                os.close(obj) if isinstance(obj, int) else obj.close()
            except OSError:
                pass
        # a fresh interpreter's dispositions, but what the command ignores (nohup's SIGHUP, a
        # script's background SIGINT), which a fresh interpreter would inherit ignored
        for sig in (*_HANDLED, signal.SIGCHLD):
            if sig.name in req.get("ignored", ()):
                signal.signal(sig, signal.SIG_IGN)
            else:
                signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)
        global FORKED
        FORKED = True
        _die_with_parent(req["server_pid"])
        for target, fd in zip(req["fds"], fds, strict=True):
            os.dup2(fd, target)
            os.close(fd)
        for target in {0, 1, 2} - set(req["fds"]):
            os.close(target)
        _standard_streams(req["env"])
        for name, limits in req["rlimits"].items():
            if resource.getrlimit(getattr(resource, name)) != tuple(limits):
                resource.setrlimit(getattr(resource, name), tuple(limits))
        os.chdir(req["cwd"])
        os.umask(req["umask"])
        os.environ.clear()
        os.environ.update(req["env"])
        sys.argv[:] = req["argv"]
        sys.path[:] = req["path"]
        random.seed()  # a fresh interpreter's unseeded generators are not its siblings'
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed()
        # preloaded: the command line, as a fresh interpreter's
        from doracle.cli import run as run_here

        run_here()  # leaves through sys.exit or leave()
        rc = 0
    except SystemExit as exc:  # argparse's exits (cli.run leaves a torch job through leave())
        rc = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, int | None):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        leave(rc)  # as an interpreter's exit would: its exit handlers (logging's, coverage.py's) run


def _die_with_parent(parent: int) -> None:
    """SIGKILL when the server dies (Linux's PR_SET_PDEATHSIG): its command then reports the job
    lost, so the job must not go on writing (a rerun could meet it)."""
    import ctypes  # preloaded by torch; only a child needs it

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the server died before the call
        os._exit(1)


def _standard_streams(env: dict) -> None:
    """sys.stdin/stdout/stderr on the command's descriptors, buffered as a fresh interpreter's:
    stdout line-buffered on a terminal, stderr line-buffered, both unbuffered with PYTHONUNBUFFERED."""
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    enc = sys.stdout.encoding if sys.stdout else "utf-8"

    def text(fd, mode, line_buffering=False, **kw):
        try:
            os.fstat(fd)
        except OSError:  # closed in the command, so closed here
            return None
        tty = os.isatty(fd)
        if mode == "r":
            return open(fd, closefd=False, encoding=enc, **kw)
        raw = io.FileIO(fd, "w", closefd=False)
        return io.TextIOWrapper(raw if unbuffered else io.BufferedWriter(raw), encoding=enc,
                                line_buffering=line_buffering or tty, write_through=unbuffered, **kw)

    sys.stdin = sys.__stdin__ = text(0, "r")
    sys.stdout = sys.__stdout__ = text(1, "w")
    sys.stderr = sys.__stderr__ = text(2, "w", line_buffering=True, errors="backslashreplace")


class Server:
    """Accept commands on ``path``, fork a child for each, report each child's exit to its command.

    ``inherited``: objects the server holds open (its lock and log files), closed in every child
    so that a child that outlives the server holds neither."""

    def __init__(self, path: str, idle: float = IDLE_SECONDS, log=None, inherited=()) -> None:
        self.path, self.idle, self.log, self.inherited = path, idle, log or (lambda msg: None), list(inherited)
        self.jobs: dict[int, tuple[socket.socket | None, int]] = {}  # pid -> (its command's connection, pidfd)
        self.stopping = False
        self.package = os.path.dirname(os.path.abspath(__file__))

    def serve(self) -> None:
        for name in PRELOAD:
            __import__(name)
        if "torch" in sys.modules and sys.modules["torch"].cuda.is_initialized():
            raise RuntimeError("CUDA was initialised while preloading: a forked child could not use it")
        files = _preloaded_files()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(self.path)
        ino = os.stat(self.path).st_ino
        listener.listen(64)
        sel = selectors.DefaultSelector()
        sel.register(listener, selectors.EVENT_READ, ("listen", None))
        accepting = True
        signal.signal(signal.SIGTERM, lambda *_: setattr(self, "stopping", True))
        self.log(f"serving {self.path} (pid {os.getpid()}, {len(files)} doracle files preloaded)")
        last = time.monotonic()
        try:
            while True:
                for sk, _ in sel.select(timeout=1.0):
                    what, pid = sk.data
                    if what == "listen":
                        conn, _ = listener.accept()
                        self._start(conn, sel, files, listener)
                    elif what == "client":
                        self._client_event(sk.fileobj, pid, sel)
                    else:
                        self._reap(pid, sel)
                if self.jobs:
                    last = time.monotonic()
                if not self.stopping and not self._ours(ino):
                    self.log("the socket was replaced or removed: stopping")
                    self.stopping = True
                if self.stopping and accepting:  # new commands start a new server (or run their jobs)
                    accepting = False
                    sel.unregister(listener)
                    if self._ours(ino):
                        os.unlink(self.path)
                    self._drain(listener)
                if not self.jobs and (self.stopping or time.monotonic() - last > self.idle):
                    break
        finally:
            if self._ours(ino):
                os.unlink(self.path)
            self._drain(listener)
            listener.close()
            self.log("stopped")

    def _ours(self, ino: int) -> bool:
        try:
            return os.stat(self.path).st_ino == ino
        except OSError:
            return False

    def _drain(self, listener: socket.socket) -> None:
        """Refuse what waits in the backlog: those commands run their jobs themselves."""
        listener.setblocking(False)
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            _send(conn, {"refused": "the server is stopping"})
            conn.close()

    def _refuse(self, conn: socket.socket, fds: list[int], why: str) -> None:
        _send(conn, {"refused": why})
        for fd in fds:
            os.close(fd)
        conn.close()

    def _start(self, conn: socket.socket, sel, files, listener) -> None:
        try:
            req, fds = _recv_request(conn)
        except (OSError, ValueError) as exc:
            self.log(f"a bad request: {exc}")
            conn.close()
            return
        if self.stopping:
            return self._refuse(conn, fds, "the server is stopping")
        if req.get("package") != self.package:  # a command of another copy of doracle
            return self._refuse(conn, fds, f"this server runs {self.package}")
        unsettable = rlimits_settable(req.get("rlimits", {}))
        if unsettable:  # the command's limits are above the server's: it runs the job itself
            return self._refuse(conn, fds, f"limits above the server's: {', '.join(unsettable)}")
        stale = changed(files)
        if stale:
            self.log(f"{stale[0]} changed on disk: refusing and stopping")
            self.stopping = True
            return self._refuse(conn, fds, "stale")
        close = [listener, sel, conn, *self.inherited,
                 *(c for c, _ in self.jobs.values() if c is not None), *(p for _, p in self.jobs.values())]
        req["server_pid"] = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            self.log(f"fork failed: {exc}")
            return self._refuse(conn, fds, f"fork: {exc}")
        if pid == 0:
            _child(req, fds, close)
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        self.jobs[pid] = (conn, pidfd)
        _send(conn, {"pid": pid})
        sel.register(pidfd, selectors.EVENT_READ, ("child", pid))
        sel.register(conn, selectors.EVENT_READ, ("client", pid))
        words = req["argv"][1:3] if req["argv"][1:2] == ["do"] else req["argv"][1:2]
        self.log(f"job {pid}: {' '.join(words)}")

    def _client_event(self, conn: socket.socket, pid: int, sel) -> None:
        """The command sends nothing after its request: a readable connection is a closed one, a
        command killed outright (SIGKILL), whose job goes with it."""
        try:
            gone = conn.recv(1) == b""
        except OSError:
            gone = True
        if gone:
            sel.unregister(conn)
            conn.close()
            self.jobs[pid] = (None, self.jobs[pid][1])
            self.log(f"job {pid}: its command was killed: killing it")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    def _reap(self, pid: int, sel) -> None:
        conn, pidfd = self.jobs.pop(pid)
        _, status = os.waitpid(pid, 0)
        rc = os.waitstatus_to_exitcode(status)
        sel.unregister(pidfd)
        os.close(pidfd)
        self.log(f"job {pid}: exit {rc}")  # before the command hears it: its log is complete when it returns
        if conn is not None:
            sel.unregister(conn)
            _send(conn, {"exit": rc})
            conn.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m doracle.forkserver SOCKET``: serve on SOCKET until idle (the command starts it)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m doracle.forkserver SOCKET (the doracle command starts it)", file=sys.stderr)
        return 2
    path = args[0]
    lock = open(path + ".lock", "w")  # noqa: SIM115 (held for the server's life)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            # another server has it: one that serves (its socket is there) or, for a while, one that
            # is starting, or leaving (its socket removed, its last lines being logged): wait for that
            if os.path.exists(path) or time.monotonic() > deadline:
                return 0
            time.sleep(0.05)
    with open(path + ".log", "w", buffering=1) as logf:  # this server's life (the lock's holder alone)
        def log(msg: str) -> None:
            try:
                logf.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n")
            except OSError:  # a full runtime folder: the jobs, and their exit statuses, matter more
                pass

        try:
            idle = float(os.environ.get(IDLE_ENV, IDLE_SECONDS))
        except ValueError:
            idle = IDLE_SECONDS
        try:
            Server(path, idle, log, inherited=(lock, logf)).serve()
        except Exception as exc:  # the commands run their jobs themselves: nothing is lost
            log(f"failed: {type(exc).__name__}: {exc}")
            return 1
    return 0


if __name__ == "__main__":  # run as the package's module, not as __main__: one copy of its state (FORKED)
    from doracle.forkserver import main as _main

    sys.exit(_main())
