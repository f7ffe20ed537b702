"""Optuna sweeps (``doracle sweep``, docs/sweeps.md): real Optuna, real journal and SQLite files.
One trial runs the real pipeline through the sweep's Snakemake target, on a configuration smaller
than TINY (~1-1.5 min on 2 cores; test_slurm runs another through SLURM). The sweep logic runs on
a stand-in pipeline that writes the same files in milliseconds (tests/fake_trials.py): a 3-trial
sweep and its report, a killed worker's trial retried, SIGTERM, two workers sharing one study,
pruning after a DO iteration. Also: bad space files refused before any trial, and the metric
``auto`` per game."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

import fake_trials
from project import ROOT, make_project, merge, params_with, run

EXP = "sw"
FGSM = {"name": "fgsm", "steps": 1, "rel_step_size": 1.0, "restarts": 1, "random_start": False}
# smaller than TINY: no baselines, one DO iteration, FGSM only, 40 test examples
SWEEP_TINY = {
    "experiment": EXP, "data": {"max_train": 120}, "training": {"epochs": 1}, "base": {"epochs": 1},
    "defenses": {"pgd_at": {"attack": FGSM}},
    "do": {"iterations": 1, "attacker": {"attack": FGSM}},
    "baselines": {"methods": [], "matched": [], "epochs": 1},
    "evaluation": {"attacks": {"fgsm": FGSM}, "per_member": [], "autoattack": None, "eps_curve": None,
                   "max_examples": 40},
}
LR = {"type": "float", "low": 1.0e-4, "high": 1.0e-2, "log": True}


def space(study: str, **kw) -> dict:
    """A space over training.lr; no pruning unless asked (the median pruner may prune any third trial)."""
    return {"study": study, "sampler": "random", "pruner": {"name": "none"}, "params": {"training.lr": LR}, **kw}


def sweep_project(path: Path, *spaces: dict, params: dict | None = None) -> Path:
    proj = make_project(path, params_with(merge(SWEEP_TINY, params or {})), dvc=False)
    (proj / "sweeps").mkdir()
    for s in spaces:
        (proj / "sweeps" / f"{s['study']}.yaml").write_text(yaml.safe_dump(s, sort_keys=False))
    return proj


def sweep_cmd(study: str, *extra) -> list[str]:
    return [sys.executable, "-m", "doracle", "sweep", f"sweeps/{study}.yaml", *map(str, extra)]


def load(proj: Path, study: str):
    import optuna

    backend = optuna.storages.journal.JournalFileBackend(str(proj / f"results/sweeps/{study}/journal.log"))
    return optuna.load_study(study_name=study, storage=optuna.storages.JournalStorage(backend))


def states(study) -> list[str]:
    return [t.state.name for t in study.trials]


def do_mixture(proj: Path, exp: str) -> dict:
    return json.loads((proj / f"results/{exp}/metrics.json").read_text())["models"]["do_mixture"]


def trial_starts(proj: Path, study: str, exp: str) -> int:
    """How many times a trial started on this experiment (the header each start writes to its log)."""
    return (proj / f"results/sweeps/{study}/logs/{exp}.log").read_text().count("=== trial ")


@pytest.mark.slow
def test_a_real_trial_through_the_sweeps_snakemake_target(tmp_path):
    """The one sweep test on the real pipeline: `snakemake results/sweeps/<study>/report` runs the
    study's trial as its own Snakemake run, reports after the DO iteration, and writes the report.
    (The sweep logic is tested on the fake pipeline below; test_slurm runs a trial through SLURM.)"""
    clean = "models.do_mixture.clean_accuracy"
    proj = sweep_project(tmp_path, space("one", trials=1, metric=clean, direction="maximize"))
    t0 = time.time()
    run(["snakemake", "-c2", "results/sweeps/one/report"], proj, timeout=1200)
    print(f"1-trial sweep: {time.time() - t0:.0f} s")
    (t,) = load(proj, "one").trials
    exp = t.user_attrs["experiment"]
    assert t.state.name == "COMPLETE" and exp == f"{EXP}-one-t0000"
    assert t.value == pytest.approx(do_mixture(proj, exp)["clean_accuracy"])  # its own results directory
    trial_params = yaml.safe_load((proj / t.user_attrs["params_file"]).read_text())
    assert trial_params["training"]["lr"] == t.params["training.lr"] and trial_params["experiment"] == exp
    pop = json.loads((proj / f"results/{exp}/do/it001/population.json").read_text())
    assert t.intermediate_values == {1: pytest.approx(pop["state"]["value"])}  # metric auto's game value
    best = json.loads((proj / "results/sweeps/one/best.json").read_text())
    assert best["experiment"] == exp and best["value"] == pytest.approx(t.value)
    assert "Rule: prepare_data" in (proj / f"results/sweeps/one/logs/{exp}.log").read_text()
    assert (proj / "results/sweeps/one/report/index.html").is_file()
    assert (proj / "logs/sweeps/one.log").read_text().count(" COMPLETE ") == 1


def fake_sweep(proj: Path, study: str, *extra, monkeypatch, capsys) -> tuple[int, str]:
    """``doracle sweep`` in this process, its trials built by the fake pipeline (tests/fake_trials.py)."""
    from doracle.cli import main

    monkeypatch.chdir(proj)
    rc = main(["sweep", f"sweeps/{study}.yaml", *map(str, extra)], extra={"pipeline": fake_trials.pipeline})
    return rc, capsys.readouterr().out


def fake_sweep_cmd(study: str, *extra) -> list[str]:
    """The same as a process of its own (a worker that can be killed)."""
    return [sys.executable, str(Path(fake_trials.__file__)), f"sweeps/{study}.yaml", *map(str, extra)]


def test_three_trial_sweep_finds_the_best_and_reports_it(tmp_path, monkeypatch, capsys):
    clean = "models.do_mixture.clean_accuracy"
    proj = sweep_project(tmp_path, space("three", trials=3, metric=clean, direction="maximize"))
    rc, out = fake_sweep(proj, "three", monkeypatch=monkeypatch, capsys=capsys)
    assert rc == 0, out
    study = load(proj, "three")
    assert states(study) == ["COMPLETE"] * 3
    values = {}
    for t in study.trials:
        exp = t.user_attrs["experiment"]
        assert exp == f"{EXP}-three-t{t.number:04d}"
        values[exp] = do_mixture(proj, exp)["clean_accuracy"]  # each trial its own results directory
        assert t.value == pytest.approx(values[exp])
        trial_params = yaml.safe_load((proj / t.user_attrs["params_file"]).read_text())
        assert trial_params["training"]["lr"] == t.params["training.lr"] and trial_params["experiment"] == exp
        assert t.intermediate_values == {1: pytest.approx(fake_trials.value_of(t.params["training.lr"], 1))}
    assert len({t.params["training.lr"] for t in study.trials}) == 3
    best = json.loads((proj / "results/sweeps/three/best.json").read_text())
    assert best["value"] == pytest.approx(max(values.values()))
    assert values[best["experiment"]] == pytest.approx(best["value"])
    assert best["direction"] == "maximize" and best["metric"] == clean
    report = proj / "results/sweeps/three/report"
    for f in ("optimization_history.png", "param_importances.png", "intermediate_values.png"):
        assert (report / f).stat().st_size > 1000, f
    summary = (report / "summary.md").read_text()
    assert f"**Best: trial {best['trial']}**" in summary and "not drawn" not in summary
    assert summary.count("| COMPLETE |") == 3
    page = (report / "index.html").read_text()  # the same, self-contained, for a browser
    assert page.count('src="data:image/png;base64,') == 3 and "http" not in page
    assert f'href="../../../{best["experiment"]}/report/index.html"' in page and 'href="../best.json"' in page
    assert "this worker ran 3 COMPLETE" in out


def test_killed_sweep_resumes_keeping_finished_trials(tmp_path):
    proj = sweep_project(tmp_path, space("resume", trials=2))
    dead = f"{EXP}-resume-t0001"
    blocked = proj / f"results/{dead}/blocked"
    env = {**os.environ, "FAKE_BLOCK": dead}
    with (tmp_path / "first.log").open("w") as out:
        p = subprocess.Popen(fake_sweep_cmd("resume", "--cores", 2), cwd=proj, stdout=out, stderr=subprocess.STDOUT,
                             start_new_session=True, env=env)
        deadline = time.time() + 120
        while not blocked.exists():  # trial 0 finished, trial 1 is building its first target
            assert p.poll() is None, (tmp_path / "first.log").read_text()
            assert time.time() < deadline
            time.sleep(0.05)
        os.killpg(p.pid, signal.SIGKILL)  # the worker and whatever it runs: no chance to clean up
        p.wait()
    assert states(load(proj, "resume")) == ["COMPLETE", "RUNNING"]
    mtime = blocked.stat().st_mtime_ns  # what the dead trial left in its directory
    proc = run(fake_sweep_cmd("resume", "--cores", 2), proj, timeout=300)
    assert "trial 0001: its worker died" in proc.stdout
    study = load(proj, "resume")
    assert states(study) == ["COMPLETE", "FAIL", "COMPLETE"]
    retry = study.trials[2]
    assert retry.user_attrs["retry_of"] == 1 and retry.user_attrs["experiment"] == dead
    assert retry.params == study.trials[1].params
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(done) == 2 and len({json.dumps(t.params) for t in done}) == 2  # each exactly once
    # the retry continued in the dead trial's directory, keeping what was there
    assert blocked.stat().st_mtime_ns == mtime
    assert trial_starts(proj, "resume", dead) == 2 and trial_starts(proj, "resume", f"{EXP}-resume-t0000") == 1
    assert retry.value == pytest.approx(do_mixture(proj, dead)["robust_accuracy"]["worst_case"])  # metric auto
    # rerunning a finished sweep runs nothing
    again = run(fake_sweep_cmd("resume"), proj)
    assert "this worker ran no trial" in again.stdout and len(load(proj, "resume").trials) == 3


def test_sigterm_hands_the_trial_back(tmp_path):
    """What `timeout` does to a sweep: SIGTERM stops the trial's pipeline, the trial is marked FAIL
    and queued again at once; the rerun finishes it in the same directory."""
    proj = sweep_project(tmp_path, space("term", trials=1))
    exp = f"{EXP}-term-t0000"
    blocked = proj / f"results/{exp}/blocked"
    with (tmp_path / "first.log").open("w") as out:
        p = subprocess.Popen(fake_sweep_cmd("term", "--cores", 2), cwd=proj, stdout=out, stderr=subprocess.STDOUT,
                             env={**os.environ, "FAKE_BLOCK": exp})
        deadline = time.time() + 120
        while not blocked.exists():
            assert p.poll() is None and time.time() < deadline, (tmp_path / "first.log").read_text()
            time.sleep(0.05)
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=120) == 128 + signal.SIGTERM
    first = (tmp_path / "first.log").read_text()
    assert "trial 0000: stopped; queued again" in first and "Traceback" not in first
    assert states(load(proj, "term")) == ["FAIL", "WAITING"]
    run(fake_sweep_cmd("term", "--cores", 2), proj)
    study = load(proj, "term")
    assert states(study) == ["FAIL", "COMPLETE"] and study.trials[1].user_attrs["retry_of"] == 0
    assert study.trials[1].user_attrs["experiment"] == exp and (proj / f"results/{exp}/metrics.json").is_file()
    assert "worker stopped" in study.trials[0].user_attrs["fail_reason"]


BAD = {
    "unknown_key": ({"params": {"training.lrr": LR}}, "training.lrr"),
    "low_above_high": ({"params": {"training.lr": {**LR, "low": 0.1, "high": 0.01}}}, "training.lr"),
    "invalid_choice": ({"params": {"threat_model.eps": {"type": "categorical", "choices": ["16/255", 2.0]}}},
                       "threat_model.eps"),
    "log_nonpositive": ({"params": {"do.capacity": {"type": "int", "low": 0, "high": 4, "log": True}}},
                        "do.capacity"),
    "grid_continuous": ({"sampler": "grid"}, "training.lr"),
    "unknown_sampler": ({"sampler": "cmaes"}, "sampler"),
    "unknown_space_key": ({"trails": 3}, "trails"),
    "storage_not_a_url": ({"storage": "results/x.log"}, "storage: 'results/x.log' is not a database URL"),
    "stale_below_three_beats": ({"stale_after_s": 60}, "stale_after_s"),
    # valid at its integer bounds, invalid at what a float distribution samples between them
    "storage_without_its_driver": ({"storage": "mysql://u@localhost/db"},
                                   "storage 'mysql://u@localhost/db' cannot be opened (no driver for it"),
    "storage_of_an_unknown_database": ({"storage": "notadb://x"}, "storage 'notadb://x' cannot be opened"),
    "float_on_an_int_key": ({"params": {"do.capacity": {"type": "float", "low": 2, "high": 6}}}, "do.capacity"),
}


@pytest.fixture(scope="module")
def plain_project(tmp_path_factory):
    return sweep_project(tmp_path_factory.mktemp("bad"))


@pytest.mark.parametrize("case", list(BAD))
def test_bad_space_fails_before_any_trial_naming_the_key(plain_project, case):
    over, key = BAD[case]
    (plain_project / "sweeps/bad.yaml").write_text(yaml.safe_dump({**space("bad"), **over}))
    proc = run(sweep_cmd("bad"), plain_project, check=False)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert key in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (plain_project / "results").exists()  # no journal, no trial directory


@pytest.mark.slow
def test_a_partial_base_is_completed_as_the_workflow_completes_it(plain_project, monkeypatch):
    """What is checked, fingerprinted and written as a trial's params is the completed base."""
    from doracle import config
    from doracle.sweep import load_space

    monkeypatch.chdir(plain_project)
    (plain_project / "partial.yaml").write_text("experiment: pb\ntraining: {epochs: 3}\n")
    (plain_project / "sweeps/pb.yaml").write_text(yaml.safe_dump(space("pb", base="partial.yaml")))
    spec = load_space("sweeps/pb.yaml")
    full = config.merge(config.read_raw("params.yaml"), {"experiment": "pb", "training": {"epochs": 3}})
    assert spec.base_raw == full and spec.base.training.epochs == 3
    trial = spec.trial_raw({"training.lr": 0.003}, spec.experiment(0))
    assert set(trial) == set(full) and trial["training"] == {**full["training"], "lr": 0.003}
    assert trial["experiment"] == spec.experiment(0) == "pb-pb-t0000"


def test_sweep_is_no_part_of_the_default_target(plain_project):
    (plain_project / "sweeps/bad.yaml").write_text(yaml.safe_dump(space("bad")))
    out = run(["snakemake", "-n", "--forceall"], plain_project).stdout
    assert "rule prepare_data" in out and "rule sweep" not in out


def test_two_workers_share_one_study(tmp_path):
    proj = sweep_project(tmp_path, space("two", trials=4))
    logs = [(tmp_path / f"worker{i}.log").open("w") for i in range(2)]
    # long enough for both to take trials: the second starts (imports optuna) while the first runs 4 x 2 s
    env = {**os.environ, "FAKE_TRIAL_SECONDS": "2"}
    procs = [subprocess.Popen(fake_sweep_cmd("two", "--cores", 1, "--worker", i), cwd=proj, stdout=logs[i],
                              stderr=subprocess.STDOUT, env=env) for i in range(2)]
    rcs = [p.wait(timeout=300) for p in procs]
    assert rcs == [0, 0], [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    study = load(proj, "two")
    real = [t for t in study.trials if not t.user_attrs.get("surplus")]
    assert [t.state.name for t in real] == ["COMPLETE"] * 4  # exactly 4 finished, no retry needed
    exps = [t.user_attrs["experiment"] for t in real]
    assert len(set(exps)) == 4
    for exp in exps:  # each experiment directory used by one trial, which ran once
        assert trial_starts(proj, "two", exp) == 1
        assert (proj / f"results/{exp}/metrics.json").is_file()
    assert {t.user_attrs["worker"] for t in real} == {0, 1}  # both workers ran trials
    assert sorted(p.name for p in (proj / "results/sweeps/two/trials").iterdir()) == sorted(f"{e}.yaml" for e in exps)


def test_pruned_after_the_first_do_iteration(tmp_path, monkeypatch, capsys):
    # the game value (the mixture's payoff, in [0, 1]) is always below 2: pruned at step 1
    s = space("prune", trials=1, pruner={"name": "threshold", "lower": 2.0})
    proj = sweep_project(tmp_path, s, params={"do": {"iterations": 2}})
    rc, out = fake_sweep(proj, "prune", "--cores", 2, monkeypatch=monkeypatch, capsys=capsys)
    assert rc == 0, out
    (t,) = load(proj, "prune").trials
    assert t.state.name == "PRUNED" and list(t.intermediate_values) == [1]
    exp = proj / f"results/{t.user_attrs['experiment']}"
    assert (exp / "do/it001/population.json").is_file()
    assert not (exp / "do/it002").exists() and not (exp / "metrics.json").exists()  # no target built after it
    summary = (proj / "results/sweeps/prune/report/summary.md").read_text()
    assert "No completed trial yet." in summary and not (proj / "results/sweeps/prune/best.json").exists()


def test_metric_auto_per_game(tmp_path, monkeypatch):
    """AT: the DO mixture's worst-case robust accuracy, maximised; GAN: its FID, minimised; the
    intermediate values signed to agree."""
    from doracle.sweep import load_space
    from doracle.sweep.runner import intermediate_value, metric_value

    monkeypatch.chdir(ROOT)
    f = tmp_path / "s.yaml"
    pop = {"state": {"value": 0.25, "history": [{"gap": 0.1}]}}
    f.write_text(yaml.safe_dump({"study": "g", "base": "params-gan.yaml",
                                 "params": {"gan.lr_generator": {"type": "float", "low": 1e-5, "high": 1e-3}}}))
    gan = load_space(f, names=False)
    assert (gan.metric, gan.direction) == ("models.do_mixture.fid", "minimize")
    # the shape of a GAN metrics.json (games/gan/game.merge_metrics): models -> target -> fid
    assert metric_value({"models": {"do_mixture": {"fid": 12.5, "inception_score": 3.0}}}, gan.metric) == 12.5
    assert intermediate_value(gan, pop) == 0.25  # V(G, D): lower is better for the generator
    f.write_text(yaml.safe_dump({"study": "a", "intermediate": "do_gap", "params": {"training.lr": LR}}))
    at = load_space(f, names=False)
    assert (at.metric, at.direction) == ("models.do_mixture.robust_accuracy.worst_case", "maximize")
    assert intermediate_value(at, pop) == -0.1  # maximise: the gap is reported negated
    f.write_text(yaml.safe_dump({"study": "a", "metric": "models.do_mixture.clean_accuracy", "params":
                                 {"training.lr": LR}}))
    with pytest.raises(Exception, match="direction"):
        load_space(f, names=False)


def test_dead_workers_trials_are_retried_once_on_any_storage(tmp_path, monkeypatch):
    """The accounting without the pipeline, on an RDB (SQLite) storage: a RUNNING trial whose worker
    is gone (same host: its pid; another host: no heartbeat for stale_after_s) is marked FAIL once
    and queued again with its params and experiment; it then takes no place in the study."""
    from doracle.sweep import load_space
    from doracle.sweep import runner as r

    monkeypatch.chdir(sweep_project(tmp_path))
    Path("sweeps/db.yaml").write_text(yaml.safe_dump(space("db", trials=3, storage=f"sqlite:///{tmp_path}/db.sqlite")))
    spec = load_space("sweeps/db.yaml", names=False)
    study = r.open_study(spec)
    dists = r.distributions(spec)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a pid of this host that no longer runs
    a, b, c = (study.ask(dists) for _ in range(3))
    for t, host, pid, beat in ((a, r.HOST, gone.pid, time.time()), (b, "elsewhere", 1, time.time() - 3600),
                               (c, "elsewhere", 1, time.time())):
        for k, v in {"host": host, "pid": pid, "heartbeat": beat, "experiment": f"e{t.number}"}.items():
            t.set_user_attr(k, v)
    said = []
    r.recover(study, spec, said.append)
    r.recover(r.open_study(spec), spec, said.append)  # a second worker finds nothing left to do
    assert len(said) == 2 and "trial 0000" in said[0] and "trial 0001" in said[1]
    trials = study.get_trials()
    assert [t.state.name for t in trials] == ["FAIL", "FAIL", "RUNNING", "WAITING", "WAITING"]
    assert [(t.user_attrs["retry_of"], t.user_attrs["experiment"]) for t in trials[3:]] == [(0, "e0"), (1, "e1")]
    assert [t.system_attrs["fixed_params"] for t in trials[3:]] == [a.params, b.params]
    assert [t.number for t in r.counted(trials)] == [2, 3, 4]
    # the queued retries are handed out (each once), then the study is full
    w = r.Worker(spec, say=said.append)
    got = [w.next_trial(study, dists) for _ in range(3)]
    assert [t.number for t in got[:2]] == [3, 4] and got[2] is None
    assert got[0].params == a.params and len(study.get_trials()) == 5


@pytest.mark.parametrize("args, why", [(["--cores", "abc"], "'abc' is not a positive whole number"),
                                       (["--cores", "0"], "'0' is not a positive whole number"),
                                       (["--trials", "-1"], "'-1' is not a positive whole number"),
                                       (["--worker", "x"], "'x' is not a whole number >= 0")])
def test_bad_sweep_options_fail_before_any_trial(plain_project, args, why):
    """A typo in an option would fail every trial and spend the study: refused up front."""
    (plain_project / "sweeps/opts.yaml").write_text(yaml.safe_dump(space("opts", trials=2)))
    proc = run(sweep_cmd("opts", *args), plain_project, check=False)
    assert proc.returncode == 2 and why in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (plain_project / "results").exists()


def test_a_trial_with_invalid_params_is_not_counted_stops_the_worker_and_a_fixed_rerun_runs(
        tmp_path, monkeypatch, capsys):
    """What the space's checks let through but the schema refuses (here: a categorical choice the
    check never saw, as a hand-edited study could hold) fails its trial, which is not counted
    against the study's trials; the worker stops with exit 2 naming it. Trials that fail for other
    reasons make the exit code 1."""
    from doracle.errors import ConfigError
    from doracle.sweep import runner

    proj = sweep_project(tmp_path, space("typo", trials=2))
    real = runner.cfg.validate
    raised = []

    def validate(raw, source=None):
        if not raised and "/trials/" in str(source):  # the first trial's params file
            raised.append(source)
            raise ConfigError("training.lr: Input should be greater than 0 (got -1)")
        return real(raw, source)

    monkeypatch.setattr(runner.cfg, "validate", validate)
    from doracle.cli import main

    monkeypatch.chdir(proj)
    assert main(["sweep", "sweeps/typo.yaml"], extra={"pipeline": fake_trials.pipeline}) == 2
    err = capsys.readouterr().err
    assert "are invalid: training.lr: Input should be greater than 0" in err and "not counted" in err, err
    study = load(proj, "typo")
    assert states(study) == ["FAIL"] and "invalid_params" in study.trials[0].user_attrs
    assert runner.counted(study.trials) == []
    rc, out = fake_sweep(proj, "typo", monkeypatch=monkeypatch, capsys=capsys)  # the "fixed" rerun
    assert rc == 0, out
    assert states(load(proj, "typo")) == ["FAIL", "COMPLETE", "COMPLETE"]
    # a trial failing in its pipeline: counted, and the worker's exit code says so
    proj2 = sweep_project(tmp_path / "fails", space("broken", trials=1))

    def broken(worker, trial_file, targets, log):
        raise runner.TrialFailed("snakemake exited 1 (log: x)")

    monkeypatch.chdir(proj2)
    assert main(["sweep", "sweeps/broken.yaml"], extra={"pipeline": broken}) == 1
    assert "1 trial(s) failed" in capsys.readouterr().err
