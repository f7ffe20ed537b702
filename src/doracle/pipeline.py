"""The pipeline adapters: the job table (:mod:`doracle.jobtable`) and the job graph
(:mod:`doracle.games.graph`) as Snakemake rules and DVC stages.

``workflow/rules/jobs.smk`` writes one rule per job shape of the table (its command, output
patterns, priority), with each job's inputs, params, threads and resources from :class:`Workflow`; :func:`dvc_stages` expands the same jobs into
concrete DVC stages (DVC templates have no arithmetic, so the chain of iterations is written out),
and ``doracle dvc-yaml`` writes them to ``dvc.yaml``. A test runs Snakemake's dry run and checks
that its jobs and the DVC stages carry the same commands, inputs and outputs. Here too: the
cluster resources per rule, the params resolution of a Snakemake run and its claims.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import yaml

from doracle import artifacts, jobtable
from doracle import config as cfg
from doracle.config import DEFAULT_PARAMS as PARAMS_FILE  # noqa: F401 (re-exported)
from doracle.config import Params, default_experiments  # noqa: F401 (re-exported for the workflow and CLI)
from doracle.errors import ConfigError
from doracle.games import game_of
from doracle.games.graph import (  # noqa: F401 (the job graph, re-exported for the workflow and the CLI)
    COMMON_STAGE_PARAMS,
    COUNT_ONLY_INPUTS,
    job_stages,
    jobs,
    lineage,
    model_cost,
    stage_keys,
    stage_params,
)
from doracle.paths import (  # noqa: F401 (re-exported for the workflow and the CLI)
    HTML,
    PATTERNS,
    SUMMARY,
    R,
    bench_path,
    final_targets,
    html_path,
    it3,
    log_path,
    sidecar,
    state_path,
    summary_path,
)


def rule_threads(params: Params, rule: str) -> int:
    """The threads a rule's job uses: ``params.threads`` (torch's CPU threads) for the jobs that run
    networks (the cluster rules), else 1. Snakemake schedules by it; SLURM gives as many CPUs."""
    return params.threads if jobtable.SHAPES[rule].resources is not None else 1


def rule_resources(params: Params, rule: str) -> dict:
    """The Snakemake resources of a rule's jobs, from its family in ``params.resources`` (names the
    SLURM executor plugin reads: gpu, gpu_model, gres, cpus_per_task, mem_mb, runtime in minutes,
    slurm_partition, constraint, slurm_extra). Unset keys are left out; local rules get none."""
    family = jobtable.SHAPES[rule].resources
    if family is None:
        return {}
    res = getattr(params.resources, family)
    out = {"cpus_per_task": res.cpus_per_task or rule_threads(params, rule), "mem_mb": res.mem_mb,
           "runtime": res.runtime}
    if res.gpu:
        out["gpu"] = res.gpu
    for key in ("gpu_model", "gres", "slurm_partition", "constraint", "slurm_extra"):
        if getattr(res, key) is not None:
            out[key] = getattr(res, key)
    return out


def tracked(params: Params, rule: str, wildcards: dict | None = None) -> str:
    """The params a job reads, as canonical JSON: Snakemake reruns the job when they change."""

    return json.dumps(params.stage(*stage_keys(params, *job_stages(rule, wildcards or {}))), sort_keys=True)


#: params that change the job graph in every game (the games add theirs: Game.dag_params)
DAG_PARAMS = ("experiment", "game", "do.iterations")
CHECK_STAGE = "check_dag"


def dag_keys(params: Params, raw: dict) -> list[str]:
    """The graph-changing keys of an experiment that its params file holds (DVC fails on absent keys)."""

    def present(key):
        node = raw
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    return [k for k in (*DAG_PARAMS, *game_of(params).dag_params) if present(k)]


def dvc_stages(experiments: list[tuple[Params, str]], out: str = "dvc.yaml") -> dict:
    """DVC stages of every job of ``experiments`` ((params, params file) pairs). The first
    experiment's stages keep the job names; the others' are prefixed with ``<experiment>-``.

    The first stage, ``check_dag``, tracks the keys that change the graph (do.iterations,
    baselines.methods, ...) and runs ``doracle dvc-yaml --check``: after ``dvc exp run -S
    do.iterations=3`` it fails, saying to regenerate dvc.yaml, instead of running nothing (no
    other stage reads those keys). It has no outputs and comes first, so DVC runs it first."""

    files = [f for _, f in experiments]
    check = "doracle dvc-yaml --check --params " + " ".join(files) + ("" if out == "dvc.yaml" else f" --out {out}")
    tracked_dag = [{f: dag_keys(p, cfg.read_raw(f))} for p, f in experiments]
    stages = {CHECK_STAGE: {"cmd": check, "params": tracked_dag}}
    for k, (params, params_file) in enumerate(experiments):
        for job in jobs(params, params_file):
            keys = stage_keys(params, *job["stages"])
            stage = {"cmd": job["cmd"]}
            stage["deps"] = [*job["inputs"].values(), *jobtable.code_deps(job["rule"])]
            stage["params"] = [{params_file: keys}] if params_file != PARAMS_FILE else keys
            stage["outs"] = list(job["outputs"].values())
            stages[job["name"] if k == 0 else f"{params.experiment}-{job['name']}"] = stage
    # what `dvc metrics show/diff`, `dvc exp show` and `dvc plots show/diff` compare

    metrics = [PATTERNS["headline"].format(exp=p.experiment) for p, _ in experiments]
    plots = [d for p, _ in experiments for d in game_of(p).dvc_plots(p, PATTERNS["report"].format(exp=p.experiment))]
    return {"stages": stages, "metrics": metrics, "plots": plots}


DVC_HEADER = ("# Generated by `doracle dvc-yaml` from the params files and doracle.pipeline: do not edit.\n"
              "# The same jobs as the Snakemake workflow (tests/test_pipeline_drift.py checks it).\n")


def dvc_yaml_text(experiments: list[tuple[Params, str]], out: str = "dvc.yaml") -> str:
    return DVC_HEADER + yaml.safe_dump(dvc_stages(experiments, out), sort_keys=False, width=1000)


def _relative(path) -> str:
    """``path`` relative to the working directory when it lies inside it (commands stay portable)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def checked_experiments(experiments: list[tuple[Params, str]]) -> list[tuple[Params, str]]:
    """``experiments`` with their registry names checked; two may not share an experiment name."""
    from doracle.games.checks import (
        check_names,  # the registries (numpy, scipy): not for every light job
    )

    seen: dict[str, str] = {}
    for params, f in experiments:
        check_names(params)
        if params.experiment in seen:
            raise ConfigError(f"{f} and {seen[params.experiment]} both name experiment {params.experiment!r}: "
                              "their results would overwrite each other")
        seen[params.experiment] = f
    return experiments


def load_experiments(files: list[str] | tuple[str, ...]) -> list[tuple[Params, str]]:
    """(params, file) of each complete params file, names checked (``dvc-yaml``: DVC reads the files)."""

    return checked_experiments([(cfg.load(f), f) for f in files])


def resolved_path(experiment: str) -> str:
    """The params file an experiment's Snakemake jobs read (:func:`workflow_experiments`)."""
    return f"{R.format(exp=experiment)}/params.yaml"


def resolved_text(params: Params, raw: dict, source: str, original: str | None = None) -> str:
    """The resolved params file's text: a header naming its sources, then ``original`` (the text of
    a complete file read as it stands, comments kept) or ``raw`` (validated as ``params``) as YAML."""
    head = (f"# Written by the doracle workflow from {source} (params digest {params.digest()[:16]}): the params file\n"
            "# this experiment's Snakemake jobs read. Rewritten whenever that changes: edit the sources.\n")
    return head + (original if original is not None else yaml.safe_dump(raw, sort_keys=False, width=1000))


def _locked(folder: Path, lockdir: Path) -> bool:
    """Whether a Snakemake run's lock (``lockdir``/N.input.lock, N.output.lock: one path a line)
    holds a file under ``folder``."""
    if not lockdir.is_dir():
        return False
    root = folder.resolve()
    for lock in lockdir.glob("*.lock"):
        try:
            lines = lock.read_text().splitlines()
        except OSError:
            continue
        if any(line.strip() and Path(line.strip()).resolve().is_relative_to(root) for line in lines):
            return True
    return False


#: beside an experiment's resolved params: which Snakemake run wrote them and is running on them
CLAIM = ".params.claim"


def _claim_alive(claim: dict) -> bool:
    """Whether the process of a claim still runs (a claim from another host counts as alive)."""

    if claim.get("host") != artifacts._HOST:
        return True
    try:
        pid = int(claim["pid"])
    except (KeyError, ValueError, TypeError):
        return True  # a claim we cannot read as ours
    return artifacts.pid_alive(pid)


def claim_params(path: str | Path, text: str, *, pid: int | None = None) -> None:
    """Claim ``path`` (an experiment's resolved params) for this Snakemake run before writing it:
    ``<folder>/.params.claim`` (created exclusively) holds this host, the run's pid and the digest
    of ``text``. Another live run's claim on other params refuses, naming it; a claim whose process
    is gone (a run that ended or was killed) is replaced; a live claim on the same params is left
    to Snakemake's own lock. So two runs started together cannot mix their params: the second one
    stops before writing anything its jobs would read. :func:`release_claims` drops the claim."""


    claim = Path(path).parent / CLAIM
    mine = {"host": artifacts._HOST, "pid": pid or os.getpid(), "params_sha256": hashlib.sha256(text.encode()).hexdigest()}
    claim.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(5):
        try:
            fd = os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        except FileExistsError:
            try:
                other = json.loads(claim.read_text())
                other = other if isinstance(other, dict) else {}
            except (OSError, ValueError):
                other = {}  # being written, or damaged: a claim of nobody once old enough
            if (other.get("host"), other.get("pid")) == (mine["host"], mine["pid"]) or (
                    other and other.get("params_sha256") == mine["params_sha256"]):
                return
            if other and _claim_alive(other):
                raise ConfigError(
                    f"{path}: another Snakemake run (host {other.get('host')}, pid {other.get('pid')}) is running "
                    f"this experiment with other params ({claim}); its jobs read that file. Wait for it to end, "
                    "or stop it, then rerun (a claim whose process is gone is replaced by itself; from another "
                    f"host, remove {claim} once that run is over).") from None
            if not other and claim.exists() and os.stat(claim).st_mtime > time.time() - 5:
                time.sleep(0.2)  # a claim being written right now: read it again
                continue
            claim.unlink(missing_ok=True)  # its run is gone
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(mine))
        return
    raise ConfigError(f"{claim}: could not claim the experiment's params file (other runs keep claiming it)")


def release_claims(experiments, *, pid: int | None = None) -> None:
    """Remove the params claims this process holds (the Snakefile's onsuccess / onerror)."""

    for params, _ in experiments:
        claim = Path(resolved_path(params.experiment)).parent / CLAIM
        try:
            other = json.loads(claim.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(other, dict) and (other.get("host"), other.get("pid")) == (artifacts._HOST, pid or os.getpid()):
            claim.unlink(missing_ok=True)


def write_resolved(path: str | Path, text: str, *, dry_run: bool = False, lockdir: str | Path = ".snakemake/locks"):
    """Write ``text`` to ``path`` atomically when it differs from what is there. Not in a dry run
    (nothing is written, the jobs print what they would read), and never under another run's
    feet: the run claims the file first (:func:`claim_params`), and while another Snakemake run
    holds files of this experiment its jobs may be reading it."""

    path = Path(path)
    if (path.read_text() if path.is_file() else None) == text or dry_run:
        return
    claim_params(path, text)
    if _locked(path.parent, Path(lockdir)):
        raise ConfigError(
            f"{path}: these params differ from those of the Snakemake run that holds this experiment's "
            f"files ({lockdir}), whose jobs read that file. Wait for that run to end, then rerun; if none "
            "is running (a run killed by SIGKILL leaves its lock), run `snakemake --unlock` first.")
    artifacts.atomic_write_bytes(path, text.encode())


def _from_cli(value):
    """Snakemake types a ``--config`` value as int, float or bool where it can and otherwise
    reads it with YAML's *base* loader, which leaves every scalar a string (``'do={iterations: 3}'``
    gives ``{'iterations': '3'}``, ``seed=null`` gives ``'null'``). Read strings as YAML scalars."""
    if isinstance(value, dict):
        return {k: _from_cli(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_cli(v) for v in value]
    if isinstance(value, str):
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return value
    return value


def workflow_experiments(cli_configfiles: list | None = None, overrides: dict | None = None, *,
                         dry_run: bool = False, say=None) -> list[tuple[Params, str]]:
    """The experiments a Snakemake run covers, as (params, the params file its jobs read).

    Without ``--configfile``: those of :func:`default_experiments`; with one: that file alone. A
    partial file is completed from its game's default file, and ``--config`` overrides
    (``--config seed=1 'do={iterations: 3}'``) apply to every experiment of the run
    (:func:`doracle.config.resolve`). Every experiment's params, resolved or as they stand, are
    validated and written to ``results/<experiment>/params.yaml``, the file its jobs read. The path
    is the same whatever the overrides, so Snakemake reruns only the jobs whose params changed
    (``tracked``), and the file is rewritten only when its content changes (a rerun with the same
    overrides is a no-op). ``dvc.yaml``'s commands read the experiment files themselves.
    """

    files = [_relative(f) for f in (cli_configfiles or [])]
    if len(files) > 1:
        raise ConfigError(f"give at most one --configfile (a params file, complete or partial), got {files}")
    top = {k: v if k in ("experiment", "game") else _from_cli(v) for k, v in dict(overrides or {}).items()}
    tree = cfg.dotted_tree({k: str(v) if k in ("experiment", "game") else v for k, v in top.items()})
    given = " ".join(f"{k}={yaml.safe_dump(v, default_flow_style=True, width=1000).strip().removesuffix('...').strip()}"
                     for k, v in top.items())
    resolved = []
    for f in files or default_experiments():
        params, raw, base, source = cfg.load_resolved(f, tree, given)
        if base and say:
            missing = ", ".join(k for k in cfg.read_raw(base) if k not in cfg.read_raw(f))
            say(f"doracle: {f} is partial (it has no {missing}): completed from {base}")
        original = None if base or top else Path(f).read_text()
        resolved.append((params, resolved_text(params, raw, source, original), source))
    out = checked_experiments([(params, source) for params, _, source in resolved])  # before writing anything
    for params, text, _ in resolved:
        write_resolved(resolved_path(params.experiment), text, dry_run=dry_run)
    return [(params, resolved_path(params.experiment)) for params, _ in out]


class Workflow:
    """What the Snakemake rules ask of the experiments, per job: every rule's inputs, params,
    threads and resources come from :func:`jobs` (the source DVC's stages come from too), looked
    up by the job's wildcards (``exp`` picks the experiment)."""

    def __init__(self, experiments: list[tuple[Params, str]]) -> None:
        self.experiments = {p.experiment: (p, f) for p, f in experiments}
        self._jobs = {}
        for params, f in experiments:
            for job in jobs(params, f):
                self._jobs[(params.experiment, job["rule"], tuple(sorted(job["wildcards"].items())))] = job

    def params_of(self, w) -> Params:
        return self.experiments[w.exp][0]

    def job(self, rule: str, w) -> dict:
        key = (w.exp, rule, tuple(sorted((k, v) for k, v in w.items() if k != "exp")))
        try:
            return self._jobs[key]
        except KeyError:

            raise ConfigError(f"no {rule} job of experiment {w.exp!r} with {dict(key[2])}: "
                              "not part of its pipeline (do.iterations, the game's players and baselines)") from None

    def constraint(self, wildcard: str) -> str:
        """A regex of every value ``wildcard`` takes in any experiment's jobs."""
        values = sorted({v for (_, _, wc) in self._jobs for k, v in wc if k == wildcard})
        return "|".join(values) or "^$"

    def targets(self) -> list[str]:
        return [t for p, _ in self.experiments.values() for t in final_targets(p)]

    def inputs(self, rule: str):
        return lambda w: self.job(rule, w)["inputs"]

    @staticmethod
    def outputs(rule: str) -> dict[str, str]:
        """The rule's output patterns (wildcards ``{exp}`` and the shape's own)."""
        return jobtable.SHAPES[rule].output_patterns()

    @staticmethod
    def shell(rule: str) -> str:
        """The rule's command template (Snakemake formats it with the job's input, output, ...)."""
        return jobtable.SHAPES[rule].cmd

    @staticmethod
    def log(rule: str) -> str:
        return log_path(next(iter(jobtable.SHAPES[rule].output_patterns().values())))

    @staticmethod
    def benchmark(rule: str) -> str:
        return bench_path(next(iter(jobtable.SHAPES[rule].output_patterns().values())))

    def params(self, rule: str) -> dict:
        """The rule's ``params``: the params file, the tracked params (JSON), and the job's extras."""
        names = {k for j in self._jobs.values() if j["rule"] == rule for k in j["params"]}
        out = {k: (lambda w, k=k: self.job(rule, w)["params"][k]) for k in sorted(names)}
        out["tracked"] = lambda w: tracked(self.params_of(w), rule, {k: v for k, v in w.items() if k != "exp"})
        # the code the job runs: a change to it reruns the job (Snakemake's params rerun trigger)
        out["code"] = jobtable.code_digest(rule)
        return out

    def threads(self, rule: str):
        return lambda w: rule_threads(self.params_of(w), rule)

    def resources(self, rule: str) -> dict:
        """Per resource name a function of the job (None, i.e. unset, where an experiment has none)."""
        names = {k for p, _ in self.experiments.values() for k in rule_resources(p, rule)}
        return {k: (lambda w, k=k: rule_resources(self.params_of(w), rule).get(k)) for k in sorted(names)}
