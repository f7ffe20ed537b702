"""Snakemake and DVC describe the same jobs (fast checks on the repository's own params.yaml).

The end-to-end test (test_pipeline_e2e.py) repeats the comparison on the jobs Snakemake ran.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from project import ROOT, as_dvc_cmd, run

# experiment -> params file of the repository's default experiments
EXPERIMENTS = {yaml.safe_load((ROOT / f).read_text())["experiment"]: f for f in ("params.yaml", "params-gan.yaml")}


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
        jobs[as_dvc_cmd(cmd, EXPERIMENTS)] = {"outs": split(fields.get("output", "")), "deps": split(fields.get("input", ""))}
    return jobs


def test_committed_dvc_yaml_is_generated_from_params_yaml(cli):
    proc = cli("dvc-yaml", "--check", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr


def test_dry_run_jobs_equal_dvc_stages():
    """Both default experiments (params.yaml: AT, params-gan.yaml: GAN) in one run, job for job."""
    jobs = dry_run_jobs(ROOT)
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert stages.pop("check_dag")["cmd"].startswith("doracle dvc-yaml --check")  # DVC's own guard, no job
    from doracle import config, jobtable, provenance

    # besides the jobs' inputs, each stage depends on the code its job runs (src/doracle/...)
    code = {s["cmd"]: tuple(d for d in s["deps"] if d.startswith(provenance.SOURCE_DIR + "/")) for s in stages.values()}
    assert set(code.values()) <= {tuple(jobtable.code_deps(r)) for r in jobtable.SHAPES}
    assert all(provenance.SOURCE_DIR + "/report" in c for cmd, c in code.items() if cmd.startswith("doracle report"))
    assert not any(provenance.SOURCE_DIR + "/models" in c for cmd, c in code.items() if cmd.startswith("doracle do solve"))
    dvc = {s["cmd"]: {"outs": set(s["outs"]), "deps": set(s["deps"]) - set(code[s["cmd"]])} for s in stages.values()}

    at, gan = config.load(ROOT / "params.yaml"), config.load(ROOT / "params-gan.yaml")
    assert (at.game, gan.game) == ("at", "gan")
    k, t = len(at.baselines.methods) + len(at.baselines.matched), at.do.iterations
    assert at.baselines.matched_names() == ["pgd_at_epochs", "pgd_at_passes"]
    # data, base, k baselines (the matched ones included), init, 5 per iteration, close, 3 DO evaluations,
    # k baseline evaluations, metrics, report
    n_at = 1 + 1 + k + 1 + 5 * t + 1 + 3 + k + 1 + 1
    # data, reference classifier, 2 base GANs (player-epochs, passes), init, 4 per iteration (the co-trained
    # pair is one job), close, 2 DO evaluations, the base GANs', metrics, report
    assert gan.gan.oracle == "cotrained"
    n_gan = 1 + 1 + 2 + 1 + 4 * gan.do.iterations + 1 + 2 + 2 + 1 + 1
    assert len(jobs) == n_at + n_gan
    assert sum("--params params-gan.yaml" in cmd for cmd in jobs) == n_gan
    assert jobs == dvc


def test_dvc_params_are_the_keys_each_job_records():
    """DVC tracks exactly the params each stage's artifacts record (the stages' params keys)."""
    from doracle import config, pipeline

    stages = iter(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].items())
    assert next(stages)[0] == pipeline.CHECK_STAGE
    for k, file in enumerate(pipeline.default_experiments(ROOT)):
        params = config.load(ROOT / file)
        raw = yaml.safe_load((ROOT / file).read_text())
        for job in pipeline.jobs(params, file):
            name, stage = next(stages)
            assert name == (job["name"] if k == 0 else f"{params.experiment}-{job['name']}")
            keys = stage["params"] if k == 0 else stage["params"][0][file]
            assert keys == pipeline.stage_keys(params, *job["stages"])
            for key in keys:  # every tracked key exists in the params file (DVC fails on missing keys)
                node = raw
                for part in key.split("."):
                    node = node[part]
    assert next(stages, None) is None


def test_stale_dvc_yaml_is_detected(cli, tmp_path):
    import shutil

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copy(ROOT / "params-gan.yaml", tmp_path / "params-gan.yaml")
    (tmp_path / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text().replace("it005", "it004"))
    proc = cli("dvc-yaml", "--check", cwd=tmp_path)
    assert proc.returncode == 2 and "out of date" in proc.stderr


def test_dvc_metrics_and_plots_name_outputs_of_the_pipeline():
    """dvc.yaml's `metrics:` are each experiment's headline.json (an output of its metrics stage),
    and every file its `plots:` read lies in an experiment's report folder (a report stage's output)."""
    doc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    outs = {o for s in doc["stages"].values() for o in s.get("outs", [])}
    assert doc["metrics"] == [f"results/{e}/headline.json" for e in EXPERIMENTS]
    assert set(doc["metrics"]) <= outs
    files = set()
    for entry in doc["plots"]:
        (key, props), = entry.items()
        files |= set(props["y"]) if isinstance(props.get("y"), dict) else {key}
    reports = {f"results/{e}/report" for e in EXPERIMENTS}
    assert reports <= outs
    assert all(str(Path(f).parent).removesuffix("/plots") in reports for f in files), files
    assert {f.rsplit("/", 1)[1] for f in files} >= {"robustness_curve.json", "do_gap.json", "scores.json",
                                                    "payoff_heatmap.png", "samples_do_mixture.png"}
