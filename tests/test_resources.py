"""Cluster resources per rule (params.yaml `resources`, the job table's families) and the profiles.

Fast: no cluster. tests/test_slurm.py runs the workflow through a real SLURM cluster.
"""

from __future__ import annotations

import re

import pytest
import yaml

from doracle import config, jobtable, pipeline
from doracle.errors import ConfigError
from project import ROOT, make_project, params_with, run


def test_every_rule_has_a_family_or_runs_locally():
    assert all(s.rule == r for r, s in jobtable.SHAPES.items())
    families = set(config.Resources.model_fields)
    assert {f for f in (s.resources for s in jobtable.SHAPES.values()) if f} == families
    assert set(jobtable.local_rules()) == {"prepare_data", "solve", "prune", "metrics", "report"}


def test_threads_are_params_threads_for_the_torch_rules_only():
    p = config.validate(params_with({"threads": 3}))
    threads = {rule: pipeline.rule_threads(p, rule) for rule in jobtable.SHAPES}
    # the torch jobs (they call runtime.setup with params.threads) use it; the others one thread
    assert {r for r, t in threads.items() if t == 3} == {
        "train", "train_baseline", "do_init", "best_response", "payoff", "close", "evaluate_do", "evaluate_baseline"}
    assert all(t == 1 for r, t in threads.items() if r in jobtable.local_rules())


def test_rule_resources_come_from_the_rule_family():
    p = config.validate(params_with({"threads": 2, "resources": {
        "train": {"gpu": 2, "gpu_model": "a100", "cpus_per_task": 8, "mem_mb": 32000, "runtime": 720,
                  "slurm_partition": "gpu", "constraint": "a100|h100", "slurm_extra": "--qos=long"},
        "payoff": {"gpu": 0, "slurm_partition": "cpu"}}}))
    assert pipeline.rule_resources(p, "train_baseline") == {
        "cpus_per_task": 8, "mem_mb": 32000, "runtime": 720, "gpu": 2, "gpu_model": "a100",
        "slurm_partition": "gpu", "constraint": "a100|h100", "slurm_extra": "--qos=long"}
    # cpus_per_task null = threads; gpu 0 = a CPU job (no GPU key at all)
    assert pipeline.rule_resources(p, "payoff") == {"cpus_per_task": 2, "mem_mb": 2000, "runtime": 60,
                                                    "slurm_partition": "cpu"}
    assert pipeline.rule_resources(p, "best_response")["gpu"] == 1
    assert all(pipeline.rule_resources(p, r) == {} for r in jobtable.local_rules())


BAD = [
    ({"resources": {"train": {"mem": 4000}}}, "resources.train.mem: unknown key"),
    ({"resources": {"evaluation": {}}}, "resources.evaluation: unknown key"),
    ({"resources": {"payoff": {"gpu": -1}}}, "resources.payoff.gpu"),
    ({"resources": {"payoff": {"runtime": "2h"}}}, "resources.payoff.runtime"),
    ({"resources": {"train": {"gpu": 0, "gpu_model": "a100"}}}, "resources.train: gpu_model 'a100' needs gpu >= 1"),
    ({"resources": {"train": {"gres": "gpu:a100:1"}}}, "resources.train: ask for GPUs with gpu (1) or with gres"),
    ({"resources": {"train": {"gres": "'gpu:1'"}}}, "resources.train.gres"),
    ({"resources": {"train": {"slurm_partition": "gpu; rm"}}}, "resources.train.slurm_partition"),
    ({"resources": {"evaluate": {"slurm_extra": "--qos=x --mem=4G"}}},
     "resources.evaluate.slurm_extra: --mem has its own key: use mem_mb"),
    ({"threads": 4, "resources": {"best_response": {"cpus_per_task": 2}}},
     "resources.best_response.cpus_per_task: 2 CPUs is fewer than threads (4)"),
]


@pytest.mark.parametrize("override,msg", BAD)
def test_bad_resources_fail_naming_the_key(override, msg):
    with pytest.raises(ConfigError, match=re.escape(msg)):
        config.validate(params_with(override), "params.yaml")


def test_bad_resources_fail_in_the_cli(cli, tmp_path):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params_with(BAD[-1][0])))
    proc = cli("check-params", cwd=tmp_path)
    assert proc.returncode == 2 and BAD[-1][1] in proc.stderr, proc.stderr


def test_a_gres_string_replaces_gpu():
    p = config.validate(params_with({"resources": {"train": {"gpu": 0, "gres": "gpu:a100:1"}}}))
    assert pipeline.rule_resources(p, "train")["gres"] == "gpu:a100:1"
    assert "gpu" not in pipeline.rule_resources(p, "train")


def profile(name: str) -> dict:
    return yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())


def test_the_local_profile_never_overrides_a_cluster_profile():
    """profiles/default is loaded with every run, after --profile, and wins key by key: it must not
    hold cores (caps a cluster's jobs), default-resources (replaces the cluster's) or anything a
    cluster profile sets differently."""
    default, slurm = profile("default"), profile("slurm")
    assert not {"cores", "jobs", "default-resources", "latency-wait", "keep-going", "executor"} & set(default)
    assert all(slurm[k] == v for k, v in default.items() if k in slurm)


def test_the_slurm_profile():
    slurm = profile("slurm")
    assert slurm["executor"] == "slurm" and slurm["jobs"] >= 2
    assert slurm["latency-wait"] >= 30 and slurm["retries"] >= 1
    assert {"mem_mb", "runtime"} <= set(slurm["default-resources"])
    # the plugin picks sacct when it exists: only clusters without slurmdbd want squeue (docs/slurm.md)
    assert "slurm-status-command" not in slurm
    text = (ROOT / "profiles/slurm/config.yaml").read_text()
    assert "slurm-status-command" in text and "slurm-init-seconds-before-status-checks" in text


def dry_run_resources(cwd) -> dict[str, list[dict]]:
    # a dry run has one core unless told (it would cap the threads shown); a real cluster run none
    out = run(["snakemake", "--profile", "profiles/slurm", "-n", "--forceall", "--cores", "8"], cwd).stdout
    by_rule: dict[str, list[dict]] = {}
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", out):
        m = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if not m or m.group(1) == "all":
            continue
        res = re.search(r"^    resources: (.*)$", block, re.M).group(1)
        threads = re.search(r"^    threads: (\d+)$", block, re.M)
        fields = dict(kv.split("=", 1) for kv in res.split(", "))
        fields["threads"] = threads.group(1) if threads else "1"
        by_rule.setdefault(m.group(1), []).append(fields)
    return by_rule


def test_snakemake_gives_every_job_its_family_resources_with_the_slurm_profile(tmp_path):
    """What Snakemake itself resolves for each job with profiles/slurm (a dry run; the executor
    plugin turns these into sbatch options)."""
    params = params_with({"threads": 2, "resources": {
        "train": {"slurm_partition": "gpu", "mem_mb": 5000, "cpus_per_task": 4},
        "payoff": {"gpu": 0, "slurm_partition": "cpu"}}})
    proj = make_project(tmp_path / "p", params, dvc=False)
    p = config.validate(params)
    jobs = dry_run_resources(proj)
    assert set(jobs) == set(jobtable.SHAPES)
    for rule, blocks in jobs.items():
        want = pipeline.rule_resources(p, rule)
        for got in blocks:
            assert int(got["threads"]) == pipeline.rule_threads(p, rule), rule
            if rule in jobtable.local_rules():  # the profile's default-resources, no GPU
                assert got["mem_mb"] == "1000" and "gpu" not in got, rule
                continue
            assert {k: got.get(k) for k in want} == {k: str(v) for k, v in want.items()}, rule
            assert ("gpu" in got) == ("gpu" in want), rule


def test_a_slurm_job_logs_its_allocation_and_warns_when_its_gpu_goes_unused(monkeypatch):
    from doracle import runtime

    for var in ("SLURM_JOB_ID", "SLURM_STEP_GPUS", "SLURM_JOB_GPUS", "CUDA_VISIBLE_DEVICES", "SLURMD_NODENAME"):
        monkeypatch.delenv(var, raising=False)
    assert runtime.slurm_report("cpu") is None  # not in a SLURM job
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURMD_NODENAME", "node7")
    assert runtime.slurm_report("cpu") == "SLURM job 42 on node7: GPUs [], CUDA_VISIBLE_DEVICES=, device cpu"
    monkeypatch.setenv("SLURM_JOB_GPUS", "1")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with pytest.warns(RuntimeWarning, match="allocated GPU"):
        line = runtime.slurm_report("cpu", "auto")
    assert line.endswith("GPUs [1], CUDA_VISIBLE_DEVICES=1, device cpu")
    assert runtime.slurm_report("cuda", "auto").endswith("device cuda")
