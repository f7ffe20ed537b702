"""Overriding params: Snakemake's --config and partial --configfile files (resolved, validated and
written as the experiment's params file), `dvc exp run -S`, and `doracle dvc-yaml --params`."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from doracle import config
from doracle.errors import ConfigError
from project import ROOT, make_project, params_with, run, tool_env

EXP = "tiny"
# the jobs up to the DO init: data, the base model, the init (a few seconds each on tiny)
TARGETS = [f"results/{EXP}/base/model.safetensors", f"results/{EXP}/do/it000/population.json"]


def sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def dry_run(proj: Path, *args: str, check: bool = True):
    return run(["snakemake", "-n", "-p", *args], proj, check=check)


# ------------------------------------------------------------------ resolution (no Snakemake)
def test_a_complete_file_stands_as_written_and_may_drop_map_entries(tmp_path):
    raw = params_with()
    del raw["evaluation"]["attacks"]["arc"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params_with()))
    (tmp_path / "mine.yaml").write_text(yaml.safe_dump(raw))
    resolved, base = config.resolve(tmp_path / "mine.yaml", root=tmp_path)
    assert base is None and "arc" not in resolved["evaluation"]["attacks"]


def test_a_partial_file_completes_from_its_games_default_file(tmp_path):
    for f in ("params.yaml", "params-gan.yaml"):
        (tmp_path / f).write_text((ROOT / f).read_text())
    (tmp_path / "p.yaml").write_text("training: {epochs: 3}\n")
    raw, base = config.resolve(tmp_path / "p.yaml", root=tmp_path)
    full = config.read_raw(ROOT / "params.yaml")
    assert base == "params.yaml"
    assert raw == config.set_key(full, "training.epochs", 3)
    (tmp_path / "g.yaml").write_text("game: gan\ngan: {warmup_epochs: 1}\n")
    raw, base = config.resolve(tmp_path / "g.yaml", root=tmp_path)
    assert base == "params-gan.yaml" and raw["experiment"] == "digits-gan" and raw["gan"]["warmup_epochs"] == 1
    assert raw["gan"]["generator_epochs"] == config.read_raw(ROOT / "params-gan.yaml")["gan"]["generator_epochs"]
    (tmp_path / "e.yaml").write_text("")  # an empty file is an error (Snakemake refuses it too), not params.yaml
    with pytest.raises(ConfigError, match="e.yaml: the params file is empty"):
        config.resolve(tmp_path / "e.yaml", root=tmp_path)


def test_dotted_overrides_nest_and_conflicts_are_named():
    assert config.dotted_tree({"do.iterations": 3, "do.capacity": 2, "seed": 1}) == \
        {"do": {"iterations": 3, "capacity": 2}, "seed": 1}
    with pytest.raises(ConfigError, match="'do.iterations.x'"):
        config.dotted_tree({"do.iterations": 3, "do.iterations.x": 1})


def test_check_params_resolves_a_partial_file_like_the_workflow(cli, tmp_path):
    for f in ("params.yaml", "params-gan.yaml"):
        (tmp_path / f).write_text((ROOT / f).read_text())
    (tmp_path / "seed.yaml").write_text("seed: 0\n")
    proc = cli("check-params", "--params", "seed.yaml", "--resolved", "full.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "partial: completed from params.yaml" in proc.stdout
    assert yaml.safe_load((tmp_path / "full.yaml").read_text()) == config.read_raw(ROOT / "params.yaml")
    (tmp_path / "bad.yaml").write_text("do: {iterations: 0}\n")
    proc = cli("check-params", "--params", "bad.yaml", cwd=tmp_path)
    assert proc.returncode != 0 and "params.yaml + bad.yaml: invalid params" in proc.stderr
    assert "do.iterations" in proc.stderr and "Traceback" not in proc.stderr


def test_dvc_yaml_refuses_a_partial_file_and_writes_commands_for_the_file_given(cli, tmp_path):
    for f in ("params.yaml", "params-gan.yaml"):
        (tmp_path / f).write_text((ROOT / f).read_text())
    (tmp_path / "p.yaml").write_text("seed: 3\n")
    proc = cli("dvc-yaml", "--params", "p.yaml", cwd=tmp_path)
    assert proc.returncode != 0 and "p.yaml is a partial params file" in proc.stderr
    assert not (tmp_path / "dvc.yaml").exists()
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(config.set_key(config.read_raw(ROOT / "params.yaml"),
                                                                   "experiment", "x")))
    proc = cli("dvc-yaml", "--params", "x.yaml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    stages = yaml.safe_load((tmp_path / "dvc.yaml").read_text())["stages"]
    cmds = [s["cmd"] for s in stages.values()]
    assert all("--params x.yaml" in c for c in cmds) and not any("params.yaml" in c for c in cmds)
    assert stages["check_dag"]["cmd"] == "doracle dvc-yaml --check --params x.yaml"


# ------------------------------------------------------------------ Snakemake (dry runs)
@pytest.fixture(scope="module")
def proj(tmp_path_factory):
    return make_project(tmp_path_factory.mktemp("overrides"), params_with(), dvc=False)


def test_config_overrides_reach_the_jobs_through_the_resolved_file(proj):
    data = f"results/{EXP}/data/dataset.safetensors"
    out = dry_run(proj, "--config", "do={iterations: 3}", "seed=4").stdout
    assert "best-response --player defender" in out and "it003" in out and "it004" not in out
    assert f"--params results/{EXP}/params.yaml" in out and "--params params.yaml" not in out
    resolved = proj / f"results/{EXP}/params.yaml"
    assert not resolved.exists()  # a dry run writes nothing
    run(["snakemake", "-c1", data, "--config", "do={iterations: 3}", "seed=4"], proj)
    raw = yaml.safe_load(resolved.read_text())
    assert raw == config.merge(params_with(), {"do": {"iterations": 3}, "seed": 4})
    assert "from params.yaml + --config do={iterations: 3} seed=4 " in resolved.read_text().splitlines()[0]
    assert json.loads((proj / f"results/{EXP}/data/dataset.json").read_text())["seed"] == 4
    mtime = resolved.stat().st_mtime_ns
    proc = run(["snakemake", "-c1", data, "--config", "do={iterations: 3}", "seed=4"], proj)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert resolved.stat().st_mtime_ns == mtime  # unchanged resolution: not rewritten
    dry_run(proj, "--config", "seed=5")
    assert resolved.stat().st_mtime_ns == mtime  # a dry run with other params does not touch it


def test_the_resolved_file_is_not_changed_under_another_runs_jobs(tmp_path):
    from doracle import pipeline
    from doracle.errors import ConfigError

    exp, locks = tmp_path / "results/e", tmp_path / "locks"
    path = exp / "params.yaml"
    pipeline.write_resolved(path, "a: 1\n", lockdir=locks)
    locks.mkdir()
    # another run's lock on other files (a sweep's outer run, another experiment): no matter
    (locks / "0.output.lock").write_text(f"{tmp_path / 'results/sweeps/s/report'}\n{tmp_path / 'results/f/x'}\n")
    pipeline.write_resolved(path, "a: 2\n", lockdir=locks)
    # a run that holds this experiment's files: its jobs read this file
    (locks / "1.input.lock").write_text(f"{exp / 'data/dataset.safetensors'}\n")
    pipeline.write_resolved(path, "a: 2\n", lockdir=locks)  # the same content: fine
    with pytest.raises(ConfigError, match="snakemake --unlock"):
        pipeline.write_resolved(path, "a: 3\n", lockdir=locks)
    pipeline.write_resolved(path, "a: 3\n", lockdir=locks, dry_run=True)
    assert path.read_text() == "a: 2\n"


def test_a_run_claims_the_params_it_writes_and_a_second_run_on_other_params_stops(tmp_path, monkeypatch):
    """Before Snakemake takes its lock, a run claims the experiment's params file (host, pid,
    digest): a second run with other params stops before writing, naming the first; the same
    params pass (Snakemake's lock decides); a claim whose process is gone is replaced."""
    import os
    import subprocess
    import sys
    from types import SimpleNamespace

    from doracle import pipeline
    from doracle.errors import ConfigError

    monkeypatch.chdir(tmp_path)
    path, locks = Path(pipeline.resolved_path("e")), tmp_path / "locks"
    claim = path.parent / pipeline.CLAIM
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])  # the first run, alive
    try:
        pipeline.claim_params(path, "a: 1\n", pid=other.pid)
        path.write_text("a: 1\n")
        with pytest.raises(ConfigError, match=rf"another Snakemake run \(host \S+, pid {other.pid}\) is running "
                                              r"this experiment with other params"):
            pipeline.write_resolved(path, "a: 2\n", lockdir=locks)
        assert path.read_text() == "a: 1\n"  # nothing written under the first run's jobs
        pipeline.write_resolved(path, "a: 1\n", lockdir=locks)  # the same params: nothing to write
        pipeline.claim_params(path, "a: 1\n")  # the same params: left to Snakemake's lock
        assert json.loads(claim.read_text())["pid"] == other.pid
        pipeline.release_claims([(SimpleNamespace(experiment="e"), None)])  # not ours: kept
        assert claim.exists()
    finally:
        other.kill()
        other.wait()
    pipeline.write_resolved(path, "a: 2\n", lockdir=locks)  # its process is gone: the claim is replaced
    assert path.read_text() == "a: 2\n" and json.loads(claim.read_text())["pid"] == os.getpid()
    pipeline.release_claims([(SimpleNamespace(experiment="e"), None)])
    assert not claim.exists()


@pytest.mark.slow
def test_two_runs_started_together_cannot_mix_their_params(tmp_path):
    """The hostile review's race: a run with base epochs 2 and, 0.1 s later, one with 3. Whichever
    claims the experiment first trains with its own params; the other stops naming it; a dry run
    with the winner's params then has nothing to do."""
    import subprocess
    import time

    proj = make_project(tmp_path / "race", params_with(), dvc=False)
    target = f"results/{EXP}/base/model.safetensors"
    procs = []
    for epochs in (2, 3):
        procs.append(subprocess.Popen(["snakemake", "-c1", target, "--config", f"base={{epochs: {epochs}}}"], cwd=proj,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=tool_env()))
        time.sleep(0.02)
    outs = [p.communicate(timeout=600)[0] for p in procs]
    codes = [p.returncode for p in procs]
    assert sorted(c == 0 for c in codes) == [False, True], (codes, outs)
    winner = codes.index(0)
    loser_out = outs[1 - winner]
    # stopped by the claim, before writing anything (the lock check of before came later, and left
    # a window in which the second run rewrote the params the first run's jobs then read)
    assert "is running this experiment with other params" in loser_out, loser_out
    meta = json.loads((proj / f"results/{EXP}/base/model.json").read_text())
    assert meta["training"]["epochs"] == (2, 3)[winner], meta["training"]
    assert meta["params"]["base"]["epochs"] == (2, 3)[winner]
    proc = dry_run(proj, target, "--config", f"base={{epochs: {(2, 3)[winner]}}}")
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert not (proj / f"results/{EXP}" / ".params.claim").exists()  # released when the run ended


def test_a_duplicate_experiment_name_is_refused_before_anything_is_written(tmp_path):
    two = make_project(tmp_path, params_with(), dvc=False)
    (two / "params-b.yaml").write_text(yaml.safe_dump(params_with({"experiment": "b"})))
    proc = run(["snakemake", "-c1", "--config", "experiment=same"], two, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "both name experiment 'same'" in out, out[-2000:]
    assert "params.yaml + --config experiment=same" in out and "params-b.yaml + --config" in out
    assert not (two / "results").exists()


def test_bad_overrides_stop_the_workflow_naming_the_key(proj):
    (proj / "bad.yaml").write_text('threat_model: {eps: 2}\ntraining: {"epo\\x1b[2Jchs": 2}\n')
    for args, msg in ((["--config", "do={iterations: 0}"], "do.iterations"),
                      (["--config", "sed=1"], "sed: unknown key"),
                      (["--config", "threat_model={eps: 2}"], "threat_model.eps"),
                      (["--config", "training={batch_size: 99999999999999999999}"], "training.batch_size: 9999"),
                      (["--configfile", "bad.yaml"], "threat_model.eps"),
                      (["--configfile", "bad.yaml"], "training.epo\\x1b[2Jchs: unknown key")):
        proc = dry_run(proj, *args, check=False)
        assert proc.returncode == 2, args  # as every doracle command: exit 2, one message, no stack
        assert ("doracle: error: params.yaml + --config" if args[0] == "--config" else
                "doracle: error: params.yaml + bad.yaml") in proc.stderr, proc.stderr
        assert "\x1b" not in proc.stderr  # an escape taken from the file is printed escaped
        assert msg in proc.stderr and "Traceback" not in proc.stdout + proc.stderr, args
        assert 'File "' not in proc.stderr, proc.stderr


def test_a_partial_configfile_completes_from_params_yaml(proj):
    (proj / "p.yaml").write_text("experiment: other\ndo: {iterations: 1}\n")
    out = dry_run(proj, "--configfile", "p.yaml")
    assert "--params results/other/params.yaml" in out.stdout and "it002" not in out.stdout
    assert f"results/{EXP}/" not in out.stdout
    assert "p.yaml is partial (it has no game, seed, " in out.stderr and "completed from params.yaml" in out.stderr
    run(["snakemake", "-c1", "results/other/data/dataset.safetensors", "--configfile", "p.yaml"], proj)
    assert yaml.safe_load((proj / "results/other/params.yaml").read_text()) == \
        config.merge(params_with(), {"experiment": "other", "do": {"iterations": 1}})


def test_a_complete_configfile_without_a_map_entry_is_read_as_it_stands(proj):
    raw = params_with({"experiment": "noarc"})
    del raw["evaluation"]["attacks"]["arc"]
    (proj / "noarc.yaml").write_text(yaml.safe_dump(raw))
    out = dry_run(proj, "--configfile", "noarc.yaml")
    assert "--params results/noarc/params.yaml" in out.stdout and "is partial" not in out.stderr
    run(["snakemake", "-c1", "results/noarc/data/dataset.safetensors", "--configfile", "noarc.yaml"], proj)
    assert "arc" not in yaml.safe_load((proj / "results/noarc/params.yaml").read_text())["evaluation"]["attacks"]


# ------------------------------------------------------------------ same artifacts, real runs
def _outputs(proj: Path) -> dict:
    """The weights, the init population and what each artifact records of its params and inputs."""
    base = proj / f"results/{EXP}"
    out = {}
    for f in ("base/model.safetensors", "do/it000/init.safetensors"):
        meta = json.loads((base / f).with_suffix(".json").read_text())
        out[f] = (sha(base / f), meta["params"], meta["seed"], meta["inputs"])
    out["population"] = json.loads((base / "do/it000/population.json").read_text())["state"]
    return out


@pytest.mark.slow
def test_config_and_partial_configfile_give_the_artifacts_of_the_complete_file(tmp_path):
    change = {"seed": 1, "training": {"lr": 0.002}}
    complete = make_project(tmp_path / "complete", params_with(), dvc=False)
    (complete / "full.yaml").write_text(yaml.safe_dump(params_with(change)))
    run(["snakemake", "-c2", *TARGETS, "--configfile", "full.yaml"], complete)

    partial = make_project(tmp_path / "partial", params_with(), dvc=False)
    (partial / "part.yaml").write_text(yaml.safe_dump(change))
    run(["snakemake", "-c2", *TARGETS, "--configfile", "part.yaml"], partial)

    cli_config = make_project(tmp_path / "config", params_with(), dvc=False)
    args = ["snakemake", "-c2", *TARGETS, "--config", "seed=1", "training={lr: 0.002}"]
    run(args, cli_config)

    want = _outputs(complete)
    assert want["base/model.safetensors"][1]["seed"] == 1  # the override reached the job
    assert _outputs(partial) == want
    assert _outputs(cli_config) == want
    # the same overrides again: nothing to do, nothing rewritten
    before = {p: p.stat().st_mtime_ns for p in (cli_config / "results").rglob("*") if p.is_file()}
    proc = run(args, cli_config)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    assert before == {p: p.stat().st_mtime_ns for p in (cli_config / "results").rglob("*") if p.is_file()}


# ------------------------------------------------------------------ dvc exp run -S
def _git_project(path: Path) -> Path:
    proj = make_project(path, params_with())
    run(["git", "config", "user.email", "ci@doracle"], proj)
    run(["git", "config", "user.name", "ci"], proj)
    run(["git", "add", "-A"], proj)
    run(["git", "commit", "-qm", "project"], proj)
    return proj


@pytest.mark.slow
def test_dvc_exp_run_set_param_reruns_the_stages_that_read_it(tmp_path):
    proj = _git_project(tmp_path / "exp")
    run(["dvc", "exp", "run", "-S", "seed=5", "prepare_data"], proj)
    meta = json.loads((proj / f"results/{EXP}/data/dataset.json").read_text())
    assert meta["seed"] == 5 and meta["params"]["seed"] == 5


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["do.iterations=3", "baselines.methods=[erm]", "experiment=other"])
def test_dvc_exp_run_refuses_a_graph_changing_param_before_any_stage(tmp_path, setting):
    proj = _git_project(tmp_path / "exp")
    proc = run(["dvc", "exp", "run", "-S", setting], proj, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "dvc.yaml is out of date" in out and "run `doracle dvc-yaml` first" in out, out[-2000:]
    # the guard ran first, and alone (DVC's checkout may leave empty output folders)
    assert out.count("Running stage") == 1 and "Running stage 'check_dag'" in out
    assert not [p for p in (proj / "results").rglob("*") if p.is_file()]


@pytest.mark.slow
def test_dvc_repro_of_a_bad_value_stops_at_the_guard_naming_the_key(tmp_path):
    proj = _git_project(tmp_path / "exp")
    proc = run(["dvc", "exp", "run", "-S", "threat_model.eps=2"], proj, check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "doracle: error: params.yaml: invalid params:" in out and "threat_model.eps: must be in (0, 1]" in out, out
    assert "Traceback" not in out and 'File "' not in out, out
    assert out.count("Running stage") == 1 and not [p for p in (proj / "results").rglob("*") if p.is_file()]


def test_the_guard_passes_once_dvc_yaml_is_regenerated(cli, tmp_path):
    proj = make_project(tmp_path / "p", params_with({"do": {"iterations": 3}}), dvc=False)
    proc = cli("dvc-yaml", "--check", cwd=proj)
    assert proc.returncode != 0 and "run `doracle dvc-yaml` first" in proc.stderr
    assert cli("dvc-yaml", cwd=proj).returncode == 0
    stages = yaml.safe_load((proj / "dvc.yaml").read_text())["stages"]
    proc = run(stages["check_dag"]["cmd"].split(), proj, check=False)
    assert proc.returncode == 0, proc.stderr
    assert list(stages)[0] == "check_dag" and "best_response_defender_it003" in stages


@pytest.mark.parametrize("file", ["params.yaml", "params-gan.yaml"])
def test_every_key_reaches_dvc_a_stage_or_the_guard(file):
    """So `dvc exp run -S key=value` is never a silent no-op: each key of the default files is read
    by a stage that tracks it, or changes the graph (check_dag refuses it), or is a cluster request
    (`resources`: what a job asks SLURM for, not what it computes)."""
    from doracle import pipeline

    params, raw = config.load(ROOT / file), config.read_raw(ROOT / file)
    tracked = set(pipeline.dag_keys(params, raw))
    for job in pipeline.jobs(params, file):
        tracked |= set(pipeline.stage_keys(params, *job["stages"]))

    def leaves(node, prefix=""):
        for k, v in node.items():
            yield from leaves(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]

    untracked = [k for k in leaves(raw) if not k.startswith("resources.")
                 and not any(k == t or k.startswith(t + ".") for t in tracked)]
    assert untracked == []
