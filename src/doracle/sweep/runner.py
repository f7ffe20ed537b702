"""Run a sweep's trials: each trial is the real pipeline (Snakemake as a subprocess) on its own
experiment, driven one DO iteration at a time so that Optuna can prune it.

Several workers (processes, hosts, SLURM jobs) share one study through its storage. The rules that
keep a trial from running twice and the study at its size:

* a trial is RUNNING for exactly one worker: ``study.ask`` creates it or pops a WAITING (enqueued)
  one, which Optuna hands to one worker only;
* the study's size counts every trial but the failed ones that were retried and the surplus ones
  (below): COMPLETE, PRUNED, FAIL, RUNNING and WAITING. A worker asks for a new trial only while
  that count is below ``trials`` (or a WAITING retry is queued); two workers may still race past
  the check, so after ``ask`` a trial whose number has ``trials`` counted trials before it is
  surplus: it is marked FAIL (user attr ``surplus``) without running anything;
* a dead worker's RUNNING trial (same host: its pid is gone; another host: no heartbeat for
  ``stale_after_s``) is marked FAIL by the first worker that starts after (Optuna refuses to
  update a finished trial, so only one worker wins) and enqueued again with its params and its
  experiment (``retry_of``): the retry continues in the same results directory, so finished
  Snakemake jobs are not redone. A worker stopped by SIGTERM / SIGINT stops its Snakemake run
  and does the same for its own trial at once.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from doracle import config as cfg
from doracle import pipeline as pl
from doracle.artifacts import atomic_write_bytes, pid_alive, read_json
from doracle.errors import ConfigError, DoracleError
from doracle.sweep.space import SweepSpec

HEARTBEAT_S = 60
HOST = socket.gethostname()


class TrialFailed(DoracleError):
    """A trial's pipeline run failed (its log says why)."""


class InvalidTrial(DoracleError):
    """A trial's params do not validate (what the space file allowed, the schema refuses): the
    trial is not counted and the worker stops."""


class Stopped(BaseException):
    """The worker got SIGTERM: its Snakemake run was stopped; the trial goes back for a retry."""


# ---------------------------------------------------------------------------- the study
def storage_of(spec: SweepSpec):
    # optuna (about a second to import): only sweeps and DONAS searches load it
    import optuna

    if spec.journal is None:
        try:
            return optuna.storages.RDBStorage(spec.space.storage)
        except Exception as exc:  # noqa: BLE001 - SQLAlchemy's and the drivers' errors, named for the user
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            hint = (" (no driver for it: an unknown database, or its driver is not installed)"
                    if isinstance(exc, ImportError) or type(exc).__name__ == "NoSuchModuleError" else "")
            raise ConfigError(f"{spec.source}: storage {spec.space.storage!r} cannot be opened{hint}: "
                              f"{type(exc).__name__}: {first}") from None
    spec.journal.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(spec.journal)))


def sampler_of(spec: SweepSpec, seed: int):
    # optuna (about a second to import): only sweeps and DONAS searches load it
    import optuna

    s = spec.space.sampler
    if s == "grid":
        return optuna.samplers.GridSampler(spec.grid(), seed=seed)
    if s == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def pruner_of(spec: SweepSpec):
    # optuna (about a second to import): only sweeps and DONAS searches load it
    import optuna

    p = spec.space.pruner
    if p.name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.n_startup_trials, n_warmup_steps=p.n_warmup_steps)
    if p.name == "threshold":
        return optuna.pruners.ThresholdPruner(lower=p.lower, upper=p.upper, n_warmup_steps=p.n_warmup_steps)
    return optuna.pruners.NopPruner()


def distributions(spec: SweepSpec) -> dict:
    # optuna (about a second to import): only sweeps and DONAS searches load it
    from optuna import distributions as od

    out = {}
    for key, d in spec.space.params.items():
        if d.type == "float":
            out[key] = od.FloatDistribution(d.low, d.high, log=d.log, step=d.step)
        elif d.type == "int":
            out[key] = od.IntDistribution(d.low, d.high, log=d.log, step=d.step)
        else:
            out[key] = od.CategoricalDistribution(d.choices)
    return out


def open_study(spec: SweepSpec, *, worker: int = 0, create: bool = True):
    """The study (created, or loaded when it exists). The sampler's seed is the space's seed, offset
    by the worker index and by the number of trials already there, so a resumed or second worker
    does not draw the first worker's values again; a fresh single-worker sweep is reproducible."""
    # optuna (about a second to import): only sweeps and DONAS searches load it
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage_of(spec)
    if not create:
        try:
            return optuna.load_study(study_name=spec.space.study, storage=storage)
        except KeyError:
            raise ConfigError(f"{spec.source}: no study {spec.space.study!r} in its storage yet: run `doracle "
                              f"sweep {spec.source}` first") from None
    try:
        n = len(optuna.load_study(study_name=spec.space.study, storage=storage).trials)
    except KeyError:
        n = 0
    study = optuna.create_study(
        study_name=spec.space.study, storage=storage, load_if_exists=True, direction=spec.direction,
        sampler=sampler_of(spec, spec.space.seed + 1000 * worker + n), pruner=pruner_of(spec))
    fp = spec.fingerprint()
    had = study.user_attrs.get("fingerprint")
    if had is None:
        study.set_user_attr("fingerprint", fp)
        study.set_user_attr("metric", spec.metric)
        study.set_user_attr("base", spec.space.base)
    elif had != fp:
        raise ConfigError(f"{spec.source}: the space file or its base params changed since study "
                          f"{spec.space.study!r} started ({had} -> {fp}); only `trials` may change. Give the "
                          "new space its own study name.")
    if study.direction.name.lower() != spec.direction:
        raise ConfigError(f"{spec.source}: study {spec.space.study!r} maximises/minimises the other way")
    return study


def _state(name: str):
    # optuna (about a second to import): only sweeps and DONAS searches load it
    from optuna.trial import TrialState

    return TrialState[name]


def counted(trials) -> list:
    """The trials that take a place in the study: all but retried failures, surplus trials and
    trials whose params were invalid (the worker stopped on them: a fixed rerun runs the trials)."""
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    fail = _state("FAIL")
    return [t for t in trials if not (t.state == fail and (t.number in retried or t.user_attrs.get("surplus")
                                                           or "invalid_params" in t.user_attrs))]


def _alive(t, stale_after_s: float) -> bool:
    host, pid = t.user_attrs.get("host"), t.user_attrs.get("pid")
    if host == HOST and pid is not None:
        return pid_alive(int(pid))
    last = t.user_attrs.get("heartbeat") or (t.datetime_start.timestamp() if t.datetime_start else time.time())
    return time.time() - float(last) < stale_after_s


def retry(study, t, reason: str) -> bool:
    """Mark the RUNNING trial ``t`` FAIL and enqueue it again (same params, same experiment).
    False when another worker got there first."""
    # optuna (about a second to import): only sweeps and DONAS searches load it
    from optuna.exceptions import UpdateFinishedTrialError

    storage = study._storage
    try:
        storage.set_trial_user_attr(t._trial_id, "fail_reason", reason)
        storage.set_trial_state_values(t._trial_id, state=_state("FAIL"))
    except (UpdateFinishedTrialError, RuntimeError):
        return False
    attrs = {"retry_of": t.number}
    if "experiment" in t.user_attrs:
        attrs["experiment"] = t.user_attrs["experiment"]
    study.enqueue_trial(dict(t.params), user_attrs=attrs)
    return True


def recover(study, spec: SweepSpec, say) -> None:
    """Hand every dead worker's RUNNING trial back for a retry."""
    for t in study.get_trials(deepcopy=False, states=(_state("RUNNING"),)):
        if t.user_attrs.get("pid") == os.getpid() and t.user_attrs.get("host") == HOST:
            continue
        if not _alive(t, spec.space.stale_after_s):
            who = f"host {t.user_attrs.get('host')}, pid {t.user_attrs.get('pid')}"
            if retry(study, t, f"worker died ({who})"):
                say(f"trial {t.number:04d}: its worker died ({who}): marked FAIL, queued again")


# ---------------------------------------------------------------------------- one trial
def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: Snakemake gets SIGTERM when its worker dies, so a killed worker leaves no orphan
    running in the directory its retry will use."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def metric_value(metrics: dict, path: str, source: str = "metrics.json") -> float:
    node = metrics
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise TrialFailed(f"{source}: no {path!r} (missing {part!r}; keys there: "
                              f"{', '.join(node) if isinstance(node, dict) else type(node).__name__})")
        node = node[part]
    if isinstance(node, bool) or not isinstance(node, int | float):
        raise TrialFailed(f"{source}: {path!r} is not a number ({node!r})")
    return float(node)


def intermediate_value(spec: SweepSpec, population: dict) -> float:
    """The value reported after a DO iteration, signed to agree with the study's direction: the
    game value (the row player's payoff after the iteration), or the DO gap (minimise: +gap,
    maximise: -gap)."""
    state = population["state"]
    if spec.space.intermediate == "do_gap":
        gap = float(state["history"][-1]["gap"]) if state["history"] else 0.0
        return gap if spec.direction == "minimize" else -gap
    return spec.value_sign * float(state["value"])


class Worker:
    def __init__(self, spec: SweepSpec, *, cores: str = "all", profile: str | None = None, worker: int = 0,
                 trials: int | None = None, say=print, on_trial=None, pipeline=None) -> None:
        """``pipeline(worker, trial_file, targets, log)`` builds a trial's targets: by default
        :meth:`snakemake` (the real pipeline); the tests' stand-in writes the same files in
        milliseconds, so the sweep logic is tested without a pipeline per trial. It raises
        :class:`Stopped` once ``worker.stopping`` is set, :class:`TrialFailed` on failure."""
        self.spec, self.cores, self.profile, self.worker = spec, cores, profile, worker
        self.pipeline = pipeline or Worker.snakemake
        self.cap = trials or spec.space.trials
        if spec.space.sampler == "grid":
            size = 1
            for v in spec.grid().values():
                size *= len(v)
            self.cap = min(self.cap, size)
        self.say, self.on_trial = say, on_trial or (lambda: None)
        self.proc: subprocess.Popen | None = None
        self.stopping = 0  # the signal that asked this worker to stop
        self.invalid: str | None = None  # why a trial's params were invalid (the worker stopped on it)

    def _on_signal(self, signum, frame) -> None:
        self.stopping = signum
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # Snakemake stops its jobs (training jobs save their state)

    # -- Snakemake
    def snakemake(self, trial_file: Path, targets: list[str], log: Path) -> None:
        cmd = [sys.executable, "-m", "snakemake", "--configfile", str(trial_file), "--cores", str(self.cores),
               # the sweep runs one trial per experiment (Optuna's states), so no directory lock: a
               # killed run's stale lock would otherwise block its retry, and `--unlock` would drop
               # the locks of every other worker's run in this directory
               "--nolock", "--rerun-incomplete",
               *(["--profile", self.profile] if self.profile else []), *targets]
        if self.stopping:
            raise Stopped(f"signal {self.stopping}")
        env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
        with log.open("a") as fh:
            fh.write(f"\n$ {' '.join(cmd)}\n")
            fh.flush()
            self.proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env,
                                         preexec_fn=_die_with_parent if sys.platform == "linux" else None)
            try:
                rc = self.proc.wait()
            except BaseException:
                self.stop_snakemake()
                raise
            finally:
                self.proc = None
        if self.stopping:
            raise Stopped(f"signal {self.stopping}")
        if rc != 0:
            raise TrialFailed(f"snakemake exited {rc} (log: {log})")

    def stop_snakemake(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def run_trial(self, trial) -> float:
        # optuna (about a second to import): only sweeps and DONAS searches load it
        import optuna

        spec = self.spec
        exp = trial.user_attrs.get("experiment") or spec.experiment(trial.number)
        raw = spec.trial_raw(trial.params, exp)
        trial_file = spec.dir / "trials" / f"{exp}.yaml"
        try:
            params = cfg.validate(raw, str(trial_file))
        except ConfigError as exc:
            raise InvalidTrial(f"trial {trial.number}'s params {json.dumps(trial.params)} are invalid: {exc}") from None
        header = (f"# trial {trial.number} of sweep {spec.space.study} ({spec.source}): {spec.space.base} with "
                  f"{json.dumps(trial.params)}\n")
        atomic_write_bytes(trial_file, (header + yaml.safe_dump(raw, sort_keys=False)).encode())
        log = spec.dir / "logs" / f"{exp}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        metrics = pl.PATTERNS["metrics"].format(exp=exp)
        for k, v in {"experiment": exp, "params_file": str(trial_file), "metrics": metrics, "log": str(log)}.items():
            trial.set_user_attr(k, v)
        with log.open("a") as fh:
            fh.write(f"=== trial {trial.number} ({exp}) started by {HOST}:{os.getpid()} at {time.ctime()}\n")
        for t in range(1, params.do.iterations + 1):
            pop = pl.PATTERNS["population"].format(exp=exp, it=pl.it3(t))
            self.pipeline(self, trial_file, [pop], log)
            trial.report(intermediate_value(spec, read_json(pop)), step=t)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after DO iteration {t}")
        self.pipeline(self, trial_file, pl.final_targets(params), log)
        return metric_value(read_json(metrics), spec.metric, metrics)

    # -- the worker loop
    def _heartbeat(self, storage, trial_id: int, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(Exception):
                storage.set_trial_user_attr(trial_id, "heartbeat", time.time())

    def next_trial(self, study, dists):
        """A trial for this worker, or None when the study has its trials."""
        recover(study, self.spec, self.say)
        trials = study.get_trials(deepcopy=False)
        waiting = any(t.state == _state("WAITING") for t in trials)
        if not waiting and len(counted(trials)) >= self.cap:
            return None
        trial = study.ask(dists)
        for k, v in {"host": HOST, "pid": os.getpid(), "worker": self.worker, "heartbeat": time.time()}.items():
            trial.set_user_attr(k, v)
        before = [t for t in counted(study.get_trials(deepcopy=False)) if t.number < trial.number]
        if len(before) >= self.cap:
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=_state("FAIL"))
            return None
        return trial

    def run(self) -> dict[str, int]:
        """Run trials until the study has its trials; the states of the trials this worker ran."""
        # optuna (about a second to import): only sweeps and DONAS searches load it
        import optuna

        study = self.study = open_study(self.spec, worker=self.worker)
        dists = distributions(self.spec)
        ran: dict[str, int] = {}
        old = signal.signal(signal.SIGTERM, self._on_signal)
        try:
            while not self.stopping and (trial := self.next_trial(study, dists)) is not None:
                stop = threading.Event()
                beat = threading.Thread(target=self._heartbeat, args=(study._storage, trial._trial_id, stop),
                                        daemon=True)
                beat.start()
                start, value, note = time.time(), None, ""
                try:
                    value = self.run_trial(trial)
                    state = "COMPLETE"
                except optuna.TrialPruned as exc:
                    state, note = "PRUNED", str(exc)
                except InvalidTrial as exc:  # the space let through what the params refuse: stop here
                    state, note = "FAIL", str(exc).splitlines()[0]
                    trial.set_user_attr("invalid_params", str(exc))
                    self.invalid = str(exc)
                except (DoracleError, OSError, ValueError, KeyError) as exc:
                    state, note = "FAIL", str(exc).splitlines()[0]
                    trial.set_user_attr("error", str(exc))
                except (Stopped, KeyboardInterrupt) as exc:
                    stop.set()
                    frozen = study._storage.get_trial(trial._trial_id)
                    retry(study, frozen, f"worker stopped ({HOST}, pid {os.getpid()})")
                    self.say(f"trial {trial.number:04d}: stopped; queued again for the next worker")
                    if isinstance(exc, KeyboardInterrupt):
                        raise
                    break
                finally:
                    stop.set()
                if state == "COMPLETE":
                    study.tell(trial, value)
                else:
                    study.tell(trial, state=_state(state))
                ran[state] = ran.get(state, 0) + 1
                shown = ", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
                result = f"{self.spec.metric} {value:.4f}" if value is not None else note
                self.say(f"trial {trial.number:04d} {state:<8} {result}  [{shown}]  {time.time() - start:.0f} s  "
                         f"results/{trial.user_attrs.get('experiment', '?')}")
                self.on_trial()
                if self.invalid is not None:
                    break
        finally:
            signal.signal(signal.SIGTERM, old)
        self.study = study
        return ran


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
