"""Snakemake and DVC describe the same jobs (fast checks on the repository's own params.yaml).

The end-to-end test (test_pipeline_e2e.py) repeats the comparison on the jobs Snakemake ran.
"""

from __future__ import annotations

import re

import yaml

from project import ROOT, run


def dry_run_jobs(cwd) -> dict[str, dict]:
    """Parse `snakemake -n -p --forceall`: each job's shell command, inputs and outputs."""
    out = run(["snakemake", "-n", "-p", "--forceall"], cwd).stdout
    jobs = {}
    for block in re.split(r"\n(?=\[[^\]]+\]\n(?:local)?rule )", out):
        m = re.search(r"^(?:local)?rule (\w+):", block, re.M)
        if not m or m.group(1) == "all":
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.M))
        cmd = re.search(r"^Shell command: (.*)$", block, re.M).group(1)
        split = lambda s: {x.strip() for x in s.split(",") if x.strip()}  # noqa: E731
        jobs[cmd] = {"outs": split(fields.get("output", "")), "deps": split(fields.get("input", ""))}
    return jobs


def test_committed_dvc_yaml_is_generated_from_params_yaml(cli):
    proc = cli("dvc-yaml", "--check", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_dry_run_jobs_equal_dvc_stages():
    jobs = dry_run_jobs(ROOT)
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    dvc = {s["cmd"]: {"outs": set(s["outs"]), "deps": set(s.get("deps", []))} for s in stages.values()}
    from doracle import config

    p = config.load(ROOT / "params.yaml")
    k, t = len(p.baselines.methods), p.do.iterations
    # data, base, k baselines, init, 5 per iteration, 3 DO evaluations, k baseline evaluations, metrics, report
    assert len(jobs) == 1 + 1 + k + 1 + 5 * t + 3 + k + 1 + 1
    assert jobs == dvc


def test_dvc_params_are_the_keys_each_job_records():
    """DVC tracks exactly the params each stage's artifacts record (STAGE_PARAMS)."""
    from doracle import config, pipeline

    params = config.load(ROOT / "params.yaml")
    for job, (name, stage) in zip(pipeline.jobs(params), yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items(),
                                  strict=True):
        assert job["name"] == name
        keys = stage["params"]
        assert keys == list(dict.fromkeys(k for s in job["stages"] for k in pipeline.STAGE_PARAMS[s]))
        for k in keys:  # every tracked key exists in params.yaml (DVC fails on missing keys)
            node = yaml.safe_load((ROOT / "params.yaml").read_text())
            for part in k.split("."):
                node = node[part]


def test_stale_dvc_yaml_is_detected(cli, tmp_path):
    import shutil

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text().replace("it005", "it004"))
    proc = cli("dvc-yaml", "--check", cwd=tmp_path)
    assert proc.returncode == 2 and "out of date" in proc.stderr
