"""Every file a job reads is one of its declared inputs (Snakemake's and DVC's), and its compute
record comes from those inputs, whoever ran it.

The jobs that read the records of upstream work (the metrics job: every model's passes and wall
seconds; a matched baseline: the DO run's budget; the report: each DO strategy's record) run
in-process on a copy of the shared run, under an audit hook that records every file opened for
reading."""

from __future__ import annotations

import csv
import os
import shlex
import sys
from pathlib import Path

import pytest

from doracle import artifacts, cli, compute
from doracle.artifacts import read_json, timing_of
from doracle.config import load
from doracle.games import graph

pytestmark = pytest.mark.slow

_OPENED: list[str] | None = None  # the paths opened for reading while a job runs (None: not recording)


def _audit(event: str, args: tuple) -> None:
    if _OPENED is None or event != "open" or not isinstance(args[0], (str, bytes, os.PathLike)):
        return
    path, mode, flags = args
    reading = "r" in mode and not set("wax+") & set(mode) if isinstance(mode, str) \
        else (flags & os.O_ACCMODE) == os.O_RDONLY
    if reading:
        _OPENED.append(os.fsdecode(path))


sys.addaudithook(_audit)  # audit hooks cannot be removed: this one records only while _OPENED is a list


def _jobs(proj: Path, exp: str) -> list[dict]:
    params_file = f"results/{exp}/params.yaml"
    return graph.jobs(load(proj / params_file), params_file)


def _run_recording(proj: Path, job: dict, monkeypatch) -> set[str]:
    """Run ``job``'s command in-process in ``proj``; the project files it opened for reading."""
    global _OPENED
    argv = shlex.split(job["cmd"])[1:]  # without "doracle"
    monkeypatch.chdir(proj)
    monkeypatch.setattr(artifacts, "_EXPECTED_EXPERIMENT", None)  # the job sets it: undone after the test
    _OPENED = []
    try:
        rc = cli.main(argv)
    finally:
        opened, _OPENED = _OPENED, None
    assert rc == 0, job["cmd"]
    root = proj.resolve()
    inside = {Path(os.path.abspath(proj / p)).resolve() for p in opened}
    return {str(p.relative_to(root)) for p in inside if p.is_relative_to(root) and p.is_file()}


CASES = [("tiny", "metrics"), ("tinygan", "metrics"), ("tiny", "report"), ("tinygan", "report"),
         ("tiny", "train_baseline_pgd_at_passes"), ("tinygan", "train_baseline_base_gan_passes")]


@pytest.mark.parametrize("exp,name", CASES, ids=[f"{e}-{n}" for e, n in CASES])
def test_a_job_reads_only_its_declared_inputs(shared_copy, monkeypatch, exp, name):
    proj = shared_copy
    job = next(j for j in _jobs(proj, exp) if j["name"] == name)
    read = _run_recording(proj, job, monkeypatch)
    # an artifact is a tensor file and its sidecar (the hash checked on load): a job declares the tensor
    # file; outputs may be read back
    declared = {*job["inputs"].values(), *(str(artifacts.sidecar(p)) for p in job["inputs"].values()),
                job["params"]["file"], *job["outputs"].values()}
    assert read, "the audit hook saw no read"
    undeclared = {p for p in read - declared if not any(p.startswith(o + "/") for o in job["outputs"].values())}
    assert not undeclared, f"{name} read files it does not declare: {sorted(undeclared)}"
    # the accounting jobs read the upstream records they declare; nobody reads Snakemake's timings
    if job["rule"] in ("metrics", "train_baseline", "report"):
        assert any(k.startswith("upstream_") for k in job["inputs"])
        assert {v for k, v in job["inputs"].items() if k.startswith("upstream_")} & read
    assert not any(p.startswith("benchmarks/") for p in read)


def test_the_declared_upstream_records_are_the_dvc_deps_and_snakemake_inputs(shared):
    """The same inputs reach both tools: dvc.yaml's deps of the metrics stage, and the inputs of the
    job Snakemake ran (its record in .snakemake/metadata is keyed by output; the DAG is rebuilt)."""
    import yaml

    proj = shared.path
    stages = yaml.safe_load((proj / "dvc.yaml").read_text())["stages"]
    for exp in ("tiny", "tinygan"):
        job = next(j for j in _jobs(proj, exp) if j["rule"] == "metrics")
        stage = next(s for s in stages.values() if s.get("outs") and str(s["outs"][0]).startswith(f"results/{exp}/metrics"))
        deps = set(stage["deps"])
        assert set(job["inputs"].values()) <= deps
        # the whole DO run's and the baselines' records: a defender best response and a baseline model
        ups = {v for k, v in job["inputs"].items() if k.startswith("upstream_")}
        assert f"results/{exp}/do/it001/population.json" in ups
        assert any(p.startswith(f"results/{exp}/baselines/") for p in ups)
        assert not any(p.startswith(f"results/{exp}/data/") for p in ups)


def test_wall_seconds_come_from_each_jobs_own_record(shared, monkeypatch):
    """Each job's JSON outputs record its process's age when written: within the wall time
    Snakemake measured around the command (its benchmark file), to 0.1 s (the kernel's 10 ms ticks,
    and a loaded machine's scheduling between Snakemake's clock and the job's start). The
    metrics job's wall seconds are their sums, so a tree from ``dvc repro`` (no benchmark files)
    has them too (tests/test_pipeline_dvc.py)."""
    proj = shared.path
    monkeypatch.chdir(proj)
    checked = 0
    for exp in ("tiny", "tinygan"):
        for job in _jobs(proj, exp):
            docs = [read_json(o) for o in job["outputs"].values() if o.endswith(".json")]
            wall = compute.job_wall_seconds([d for d in docs if isinstance(d, dict)])
            if job["rule"] == "report" or not docs:
                continue
            assert wall is not None and wall > 0.05, job["name"]  # a Python interpreter's start at least
            with open(job["benchmark"]) as fh:
                bench = float(next(csv.DictReader(fh, delimiter="\t"))["s"])
            # 10 ms ticks, and the moments between Snakemake's clock and the job's start on a loaded machine
            assert wall <= bench + 0.1, (job["name"], wall, bench)
            checked += 1
        m = read_json(f"results/{exp}/metrics.json")
        for label in m["models"]:
            assert timing_of(m, "models", label, "compute", "wall_seconds") > 0
    assert checked > 40


def test_the_process_clock_counts_from_the_process_start(tmp_path):
    """``process_seconds`` in a fresh interpreter includes the time before doracle was imported."""
    import subprocess

    code = "import time; time.sleep(0.6); from doracle import artifacts; print(artifacts.process_seconds())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 0.6 <= float(out) < 30
    assert artifacts.process_seconds() > 0
