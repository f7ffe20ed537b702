"""The real workflow through a real SLURM cluster: profiles/slurm, the executor plugin, sbatch.

The session fixture ``slurm_cluster`` (conftest.py) starts a one-node cluster with two fake GPUs
(tests/slurm_cluster.sh). The shared run's AT experiment (conftest.py ``shared``: the same params,
its cluster requests included) runs with ``snakemake --profile profiles/slurm`` against it; the
tests then check that every heavy job went through sbatch with its family's resources (its GPU
request included), that the light jobs ran on the submitting host, that the results are those of
the shared local run, and that a no-op dry run is fast.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from doracle import config, jobtable, pipeline
from doracle.artifacts import content
from project import RESOURCES, body, make_project, shared_params

pytestmark = [pytest.mark.slurm, pytest.mark.slow, pytest.mark.timeout(2400)]

EXP = "tiny"
# The resources of the tiny run (project.RESOURCES): GPU families on partition `gpu`, payoff as a
# CPU job on `cpu`, so both kinds of submission are checked. Results must not depend on any of it.
# Written out rather than derived, so that a rule losing its GPU request anywhere between params.yaml
# and sbatch fails the test.
GPU_RULES = {"train", "train_baseline", "do_init", "best_response", "close", "evaluate_do", "evaluate_baseline"}
# The test cluster has no slurmdbd, so `sacct` fails: status by squeue (MinJobAge 3600 s there).
# retries 0: a failing job must fail the test, not be hidden by a resubmission.
SLURM_RUN = ["snakemake", "--profile", "profiles/slurm", "--jobs", "4", "--local-cores", "1",
             "--latency-wait", "10", "--retries", "0", "--slurm-status-command", "squeue",
             "--slurm-init-seconds-before-status-checks", "2"]
# The run overrides a param (with the value the shared run has, so that the results compare): every
# job, on the submitting host and in its SLURM job step, must read the resolved params file
# (results/tiny/params.yaml, written as it resolves, not copied).
LR = 0.001
OVERRIDE = ["--config", f"training={{lr: {LR}}}"]
# Snakemake ignores SIGTERM when the plugin has lost track of a job: kill it after a grace period.
TIMEOUT = ["timeout", "-k", "30", "1500"]
# The plugin waits 10 s longer after each status check that finds nothing finished; on this cluster
# (jobs of seconds) that is most of a run: tests/slurm_polling/sitecustomize.py keeps the wait at 2 s.
POLLING = Path(__file__).resolve().parent / "slurm_polling"


def cluster_env(slurm_cluster) -> dict:
    """The cluster's environment, with the plugin's status checks kept at their initial interval."""
    env = dict(slurm_cluster.env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(POLLING), env.get("PYTHONPATH")) if p)
    return env


def sh(cmd: list[str], cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    env = {**env, "PYTHONUNBUFFERED": "1", "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-6000:]}\n"
                             f"{proc.stderr[-6000:]}")
    return proc


def scontrol_jobs(env: dict) -> dict[str, dict[str, str]]:
    """Every job slurmctld still knows (MinJobAge keeps them), as key=value fields per job id."""
    out = subprocess.run(["scontrol", "show", "job", "-d", "-o"], env=env, capture_output=True, text=True,
                         check=True).stdout
    jobs = {}
    for line in out.splitlines():
        fields: dict[str, str] = {}
        for key, value in re.findall(r"(?:^|\s)([A-Za-z][\w/:]*)=(\S*)", line):
            fields.setdefault(key, value)
        if "JobId" in fields:
            jobs[fields["JobId"]] = fields
    return jobs


def minutes(limit: str) -> int:
    """SLURM's [D-]HH:MM:SS (or MM:SS) time limit in minutes."""
    days, _, hms = limit.rpartition("-")
    parts = [int(x) for x in hms.split(":")]
    while len(parts) < 3:
        parts.insert(0, 0)
    return int(days or 0) * 1440 + parts[0] * 60 + parts[1] + (parts[2] > 0)


@pytest.fixture(scope="module")
def runs(slurm_cluster, shared, tmp_path_factory):
    params = shared_params()
    assert params["training"]["lr"] == LR
    env = cluster_env(slurm_cluster)
    local, local_seconds = shared.path, shared.seconds
    proj = make_project(tmp_path_factory.mktemp("slurm"), params, dvc=False)
    t0 = time.monotonic()
    proc = sh(TIMEOUT + SLURM_RUN + OVERRIDE, proj, env, check=False)
    slurm_seconds = time.monotonic() - t0
    if proc.returncode != 0:
        log = (slurm_cluster.state / "log" / "slurmctld.log").read_text()[-3000:]
        raise AssertionError(f"the SLURM run failed ({proc.returncode}; 124/137: timed out):\n"
                             f"{proc.stdout[-6000:]}\n{proc.stderr[-6000:]}\nslurmctld.log:\n{log}")
    print(f"\ntiny pipelines: local -c2 (AT + GAN) {local_seconds:.0f} s, AT through SLURM {slurm_seconds:.0f} s")
    return {"local": local, "slurm": proj, "output": proc.stdout + proc.stderr, "env": env,
            "params": config.validate(params), "jobs": scontrol_jobs(env)}


def test_the_cluster_schedules_jobs_on_its_fake_gpus(slurm_cluster, tmp_path):
    env = slurm_cluster.env
    out = tmp_path / "gpu.out"
    sh(["sbatch", "--wait", "--parsable", "-p", "gpu", "--gpus=1", "-t", "1", "--mem", "100", "-o", str(out),
        "--wrap", "echo GPUS=$SLURM_JOB_GPUS"], tmp_path, env)
    assert re.fullmatch(r"GPUS=[01]\n", out.read_text())
    # two GPUs, no more: a request for three can never run
    proc = sh(["sbatch", "--test-only", "-p", "gpu", "--gpus=3", "--wrap", "true"], tmp_path, env, check=False)
    assert proc.returncode != 0 and "not available" in proc.stderr


def test_every_heavy_job_went_through_sbatch_with_its_resources(runs):
    """Each cluster job's own log names the SLURM job it ran in; slurmctld's record of that job has
    the rule's comment, partition, CPUs, memory, time limit and GPU request (pipeline.rule_resources
    of the params), and its GPUs were allocated. No other job of the run was submitted."""
    proj, params, jobs = runs["slurm"], runs["params"], runs["jobs"]
    heavy = [j for j in pipeline.jobs(params) if j["rule"] not in jobtable.local_rules()]
    # base, 2 + 2 matched baselines, init, 2 x (2 best responses + payoff), close, 3 + 4 evaluations
    assert len(heavy) == 20
    seen = set()
    for job in heavy:
        log = (proj / job["log"]).read_text()
        m = re.search(r"^SLURM job (\d+) on (\S+): GPUs \[([^\]]*)\]", log, re.M)
        assert m, f"{job['name']} did not run in a SLURM job:\n{log[-2000:]}"
        jobid, node, gpus = m.groups()
        rec = jobs[jobid]
        seen.add(jobid)
        res = pipeline.rule_resources(params, job["rule"])
        wildcards = "_".join([EXP, *job["wildcards"].values()])
        assert rec["Comment"] == f"rule_{job['rule']}_wildcards_{wildcards}", job["name"]
        assert rec["JobState"] == "COMPLETED" and node == "localhost"
        assert rec["Partition"] == res["slurm_partition"], job["name"]
        assert int(rec["NumCPUs"]) == res["cpus_per_task"] == pipeline.rule_threads(params, job["rule"])
        assert rec["MinMemoryNode"] == f"{res['mem_mb']}M", job["name"]
        assert minutes(rec["TimeLimit"]) == res["runtime"], job["name"]
        assert bool(res.get("gpu")) == (job["rule"] in GPU_RULES), job["name"]
        if res.get("gpu"):
            assert rec.get("TresPerJob") == f"gres:gpu:{res['gpu']}", f"{job['name']}: no GPU request: {rec}"
            assert rec.get("JOB_GRES") == f"gpu:{res['gpu']}", job["name"]
            assert len(gpus.split(",")) == res["gpu"], f"{job['name']}: no GPU allocated"
        else:
            assert "TresPerJob" not in rec and gpus == "", job["name"]
    run_names = {jobs[j]["JobName"] for j in seen}
    assert len(run_names) == 1, "one Snakemake run submitted them all"
    submitted = {j for j, rec in jobs.items() if rec["JobName"] in run_names}
    assert submitted == seen, f"jobs submitted beyond the heavy ones: {sorted(submitted - seen)}"


def test_light_jobs_ran_on_the_submitting_host(runs):
    out, params = runs["output"], runs["params"]
    light = [j for j in pipeline.jobs(params) if j["rule"] in jobtable.local_rules()]
    assert {j["rule"] for j in light} == {"prepare_data", "solve", "prune", "metrics", "report"}
    for rule in {j["rule"] for j in light}:
        n = sum(1 for j in light if j["rule"] == rule)
        assert len(re.findall(rf"^localrule {rule}:", out, re.M)) == n, rule
    comments = {rec.get("Comment", "") for rec in runs["jobs"].values()}
    assert not {c for c in comments if re.match(rf"rule_({'|'.join(jobtable.local_rules())})_", c)}
    assert not re.search(r"^rule (prepare_data|solve|prune|metrics|report):", out, re.M)


def canonical(path: Path):
    """A result file with what differs between any two runs masked: a JSON artifact's timing block
    (docs/reliability.md; everything else, the hashes of its inputs included, must be equal), the
    wall-clock columns of the report's tables (Markdown), every decimal of index.html and
    methods.csv (their numbers are metrics.json's, compared as JSON)."""
    if path.suffix == ".json":
        return content(json.loads(path.read_text()))
    if path.suffix in (".html", ".csv"):
        return re.sub(r"\d+\.\d+", "<n>", path.read_text())
    if path.suffix == ".md":  # tables: the columns of wall-clock times
        lines, timed = [], set()
        for line in path.read_text().splitlines():
            cells = line.split("|")
            if line.startswith("| model |"):
                timed = {i for i, c in enumerate(cells) if c.strip() in ("wall s", "train s")}
            elif timed and line.startswith("| ") and not line.startswith("|---"):
                line = "|".join("<s>" if i in timed else c for i, c in enumerate(cells))
            else:
                timed = set() if not line.startswith("|") else timed
            lines.append(line)
        return lines
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_results_equal_a_local_run_of_the_same_params(runs):
    a, b = runs["slurm"] / "results" / EXP, runs["local"] / "results" / EXP
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "params.yaml")
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != "params.yaml")
    assert len([f for f in files if f.suffix == ".safetensors"]) == 12  # the matched baselines too
    # the --config override reached the jobs in their SLURM job steps: they read the params file
    # as the workflow resolved it (written out, not the project's file copied)
    resolved = (a / "params.yaml").read_text()
    assert "from params.yaml + --config training={lr: 0.001}" in resolved.splitlines()[0], resolved[:300]
    assert json.loads((a / "base/model.json").read_text())["params"]["training"]["lr"] == LR
    for f in files:
        if f.suffix in (".safetensors", ".png") or f.name in ("population.json", "payoff.json", "meta.json"):
            assert body(a / f) == body(b / f), f  # JSON: up to its timing block
        else:
            assert canonical(a / f) == canonical(b / f), f


def test_noop_dry_run_with_the_slurm_profile_does_nothing(runs):
    times = []
    for _ in range(2):
        t0 = time.monotonic()
        proc = sh(["snakemake", "--profile", "profiles/slurm", "-n", *OVERRIDE], runs["slurm"], runs["env"])
        times.append(time.monotonic() - t0)
        assert "Nothing to be done" in proc.stdout + proc.stderr
    # timed, not asserted (performance targets live in benchmarks/: bench_pipeline.py's no-op rerun)
    print(f"\nno-op `snakemake --profile profiles/slurm -n`: {min(times):.2f} s (best of 2)")


def test_a_sweep_runs_its_trials_jobs_through_the_slurm_profile(slurm_cluster, tmp_path):
    """`doracle sweep --profile`: each trial's heavy jobs are SLURM jobs of the real cluster, the
    light ones run beside the sweep, and the study gets its trial's metric."""
    from test_sweep import load, space, sweep_project

    proj = sweep_project(tmp_path, space("cluster", trials=1), params={"resources": RESOURCES})
    # profiles/slurm plus what this cluster needs (no slurmdbd: status by squeue; see SLURM_RUN)
    prof = yaml.safe_load((proj / "profiles/slurm/config.yaml").read_text())
    prof.update({"jobs": 4, "local-cores": 1, "latency-wait": 10, "retries": 0, "slurm-status-command": "squeue",
                 "slurm-init-seconds-before-status-checks": 2})
    (proj / "profiles/cluster-test").mkdir()
    (proj / "profiles/cluster-test/config.yaml").write_text(yaml.safe_dump(prof))
    env = cluster_env(slurm_cluster)
    before = set(scontrol_jobs(env))
    proc = sh(TIMEOUT + [sys.executable, "-m", "doracle", "sweep", "sweeps/cluster.yaml", "--profile",
                         "profiles/cluster-test", "--cores", "1"], proj, env, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    study = load(proj, "cluster")
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    exp = study.trials[0].user_attrs["experiment"]
    metrics = json.loads((proj / f"results/{exp}/metrics.json").read_text())
    assert study.trials[0].value == metrics["models"]["do_mixture"]["robust_accuracy"]["worst_case"]
    new = {j: rec for j, rec in scontrol_jobs(env).items() if j not in before}
    comments = sorted(rec["Comment"] for rec in new.values())
    # base model, init, one iteration's two best responses and payoff, close, three DO evaluations
    assert len(comments) == 9 and all(c.startswith("rule_") and f"_wildcards_{exp}" in c for c in comments), comments
    assert all(rec["JobState"] == "COMPLETED" for rec in new.values())
    assert not any(re.match(rf"rule_({'|'.join(jobtable.local_rules())})_", c) for c in comments)
