"""The real workflow interrupted: a defender best response preempted by SIGTERM, the whole main job
killed by SIGKILL (both resume to the uninterrupted run's bytes), and a code change that reruns
only the jobs that run that code. (Apart from tests/test_pipeline_e2e.py so that pytest-xdist runs
them beside it: `--dist loadfile`.)"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from project import make_project, params_with, run, same_results, sha, shared_params

pytestmark = pytest.mark.slow

EXP = "tiny"
# the shared run's AT params (defender best responses of 8 epochs, a checkpoint after each, for the
# SIGKILL test to catch one in training)
PARAMS = shared_params()


@pytest.fixture(scope="module")
def snake(shared):
    """The shared run (read-only) and what its `snakemake -c2` printed."""
    return shared.path, SimpleNamespace(stdout=shared.output, stderr="")


def test_a_preempted_defender_best_response_resumes_to_the_same_weights(snake, tmp_path):
    """SIGTERM (what SLURM sends before a time limit) in the middle of a DO defender best
    response, which samples its opponents from the attacker meta-strategy: exit 75 with its state
    saved, and the rerun ends with exactly the weights of an uninterrupted run."""
    import signal
    import subprocess
    import time

    from doracle.defenses.resume import checkpoint_path
    from doracle.errors import EXIT_PREEMPTED

    proj = snake[0]
    res = proj / "results" / EXP
    pf = tmp_path / "params.yaml"
    pf.write_text(yaml.safe_dump(params_with({"do": {"defender": {"epochs": 12, "opponent_weight": 0.7}}})))

    def cmd(out):
        return [sys.executable, "-m", "doracle", "do", "best-response", "--player", "defender", "--params", str(pf),
                "--data", str(res / "data/dataset.safetensors"), "--state", str(res / "do/it001/population.json"),
                "--iteration", "2", "--out", str(out)]

    ref, out = tmp_path / "ref" / "defender.safetensors", tmp_path / "run" / "defender.safetensors"
    run(cmd(ref), proj)
    proc = subprocess.Popen(cmd(out), cwd=proj, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not checkpoint_path(out).with_suffix(".json").exists():  # the first state's pair, whole
        assert proc.poll() is None and time.time() < deadline, proc.communicate()
        time.sleep(0.02)
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == EXIT_PREEMPTED, err
    assert not out.exists()
    again = run(cmd(out), proj)
    assert "resuming training from" in again.stdout + again.stderr
    assert sha(out) == sha(ref)
    assert json.loads(out.with_suffix(".json").read_text())["opponent"]["ids"]


def test_killed_main_job_resumes_after_unlock_to_identical_results(snake, tmp_path):
    """SIGKILL (a node crash, an OOM kill: no chance to save anything) of Snakemake and every job
    it runs while iteration 1's defender best response trains (its per-epoch checkpoint exists, its
    output does not). The rerun stops on Snakemake's lock, as the README says; after `snakemake
    --unlock` it completes, the defender resuming from its checkpoint, and every payoff matrix,
    weight file, evaluation and the metrics are those of the uninterrupted run (byte for byte but
    the timing blocks)."""
    import os
    import signal
    import subprocess
    import time

    from doracle.defenses.resume import checkpoint_path

    proj = make_project(tmp_path / "killed", PARAMS, dvc=False)  # the shared run's AT experiment alone
    # each job in Snakemake's process group (no fork server, whose jobs SIGSTOP to the group would
    # not freeze: tests/test_forkserver.py kills forked jobs through their commands)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "DORACLE_FORKSERVER": "0"}
    proc = subprocess.Popen(["snakemake", "-c2"], cwd=proj, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=env, start_new_session=True)
    defender = proj / "results" / EXP / "do" / "it001" / "defender.safetensors"
    deadline = time.time() + 600
    while not checkpoint_path(defender).with_suffix(".json").exists():  # the sidecar: written last
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGSTOP)  # freeze Snakemake and its jobs where they are, look, then kill
    mid_training = not defender.exists()
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert mid_training, "killed too late: the defender best response had finished"
    locked = run(["snakemake", "-c2"], proj, check=False)
    assert locked.returncode != 0 and "--unlock" in locked.stdout + locked.stderr
    run(["snakemake", "--unlock"], proj)
    run(["snakemake", "-c2"], proj)
    log = (proj / "logs" / EXP / "do" / "it001" / "defender.log").read_text()
    assert "resuming training from" in log, log[-2000:]
    assert not list((proj / "results").rglob("*.tmp"))
    assert not checkpoint_path(defender).exists()
    same_results(snake[0] / "results" / EXP, proj / "results" / EXP)


def test_a_code_change_reruns_the_jobs_that_run_it(shared_copy):
    """Editing the report's code (the project's copy of the package, which the jobs then run):
    Snakemake plans the report job only (the `code` param; rerun trigger `params`), and `dvc status`
    names the report stage only (its deps on src/doracle/report)."""
    proj = shared_copy
    env = {"PYTHONPATH": str(proj / "src")}
    assert "Nothing to be done" in run(["snakemake", "-n"], proj, env=env).stdout  # the same code, copied
    run(["dvc", "commit", "-f", "-q"], proj)
    summary = proj / "src/doracle/report/do.py"
    original = summary.read_text()
    try:
        summary.write_text(original + "\n# an edit\n")
        out = run(["snakemake", "-n"], proj, env=env).stdout
        table = out[out.index("Job stats:"):]
        counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
        assert counts == {"report": 2, "all": 1, "total": 3}, counts  # both experiments' reports
        status = json.loads(run(["dvc", "status", "--json"], proj).stdout)
        assert set(status) == {"report", "tinygan-report"}, status
    finally:
        summary.write_text(original)
    assert "up to date" in run(["dvc", "status"], proj).stdout
