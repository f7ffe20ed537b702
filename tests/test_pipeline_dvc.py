"""DVC on the real workflow's jobs: `dvc repro` regenerates the shared Snakemake run's artifacts
byte for byte, `dvc commit` / `status` / `repro` agree with a finished Snakemake run, a local-remote
round trip into a fresh clone, `dvc metrics` / `plots` show the headline numbers. (Apart from
tests/test_pipeline_e2e.py so that pytest-xdist runs them beside it: `--dist loadfile`.)"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from project import run, same_results, sha

pytestmark = pytest.mark.slow

EXP = "tiny"


@pytest.fixture(scope="module")
def snake(shared):
    """The shared run (read-only) and what its `snakemake -c2` printed."""
    return shared.path, SimpleNamespace(stdout=shared.output, stderr="")


def test_dvc_repro_regenerates_the_same_artifacts(snake, shared_dvc):
    """Same params and seed on CPU: byte-identical payoff, weights, perturbations, evaluations and
    metrics (docs/reliability.md), apart from the named ``timing`` blocks."""
    a, b = snake[0] / "results" / EXP, shared_dvc.at / "results" / EXP
    files = same_results(a, b)
    assert {"metrics.json", "do/it002/payoff.json", "do/it002/defender.safetensors"} <= set(files)
    ma, mb = (json.loads((x / "metrics.json").read_text())["models"] for x in (a, b))
    assert set(ma) == set(mb) == {"do_mixture", "do_best_member", "do_uniform", "erm", "pgd_at", "pgd_at_epochs",
                                  "pgd_at_passes"}
    assert {k: v["robust_accuracy"] for k, v in ma.items()} == {k: v["robust_accuracy"] for k, v in mb.items()}


def test_dvc_commit_after_snakemake_then_status_clean_and_repro_noop(shared_copy):
    proj = shared_copy
    run(["dvc", "commit", "-f", "-q"], proj)
    status = run(["dvc", "status"], proj)
    assert "up to date" in status.stdout
    repro = run(["dvc", "repro"], proj)
    assert "Running stage" not in repro.stdout
    assert "Data and pipelines are up to date" in repro.stdout


def test_dvc_round_trip_through_a_local_remote_into_a_fresh_clone(shared_copy, tmp_path):
    """A collaborator's round trip: dvc commit, a local directory remote, dvc push, git commit; then
    a fresh git clone, dvc pull: every file comes back, DVC says up to date, but Snakemake plans jobs
    (the pulled files are newer than their inputs) until `snakemake --touch` (docs/guide.md, DVC)."""
    proj = shared_copy
    run(["dvc", "commit", "-f", "-q"], proj)
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-f", "-d", "store", str(remote)], proj)
    run(["dvc", "push", "-q"], proj)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    run([*git, "add", "-A"], proj)
    run([*git, "commit", "-qm", "results tracked by DVC"], proj)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(proj), str(clone)], tmp_path)
    assert not (clone / f"results/{EXP}/metrics.json").exists()  # results travel through DVC, not git
    run(["dvc", "pull", "-q"], clone)
    for rel in (f"results/{EXP}/do/it002/population.json", f"results/{EXP}/do/it001/defender.safetensors",
                f"results/{EXP}/metrics.json", "results/tinygan/metrics.json"):
        assert sha(clone / rel) == sha(proj / rel), rel
    assert "up to date" in run(["dvc", "status"], clone).stdout
    planned = run(["snakemake", "-n", "-c1"], clone)
    assert "Nothing to be done" not in planned.stdout + planned.stderr  # the pulled files' mtimes
    run(["snakemake", "-c1", "--touch"], clone)
    again = run(["snakemake", "-n", "-c1"], clone)
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-2000:]
    for rel in (f"results/{EXP}/metrics.json", f"results/{EXP}/do/it001/defender.safetensors"):
        assert sha(clone / rel) == sha(proj / rel), rel  # --touch changed times, not bytes


def test_dvc_metrics_and_plots_show_the_headline_numbers(shared_copy, tmp_path):
    proj = shared_copy
    headline = json.loads((proj / f"results/{EXP}/headline.json").read_text())
    shown = run(["dvc", "metrics", "show", "--json"], proj).stdout
    found = []

    def walk(node):
        if isinstance(node, dict):
            if "do_mixture_worst_case" in node:
                found.append(node)
            for v in node.values():
                walk(v)

    walk(json.loads(shown))
    assert found == [headline]
    plots = run(["dvc", "plots", "show", "-o", str(tmp_path / "plots")], proj)
    assert "No plots were loaded" not in plots.stdout + plots.stderr
    html = (tmp_path / "plots" / "index.html").read_text()
    for title in (f"{EXP}: accuracy under PGD vs eps", f"{EXP}: DO gap", f"{EXP}: restricted game value",
                  "payoff_heatmap.png", "robustness_curve.png"):
        assert title in html, title
