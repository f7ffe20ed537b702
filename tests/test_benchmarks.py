"""Every benchmark entry point runs (tiny sizes, CPU): the scripts must not drift from the API."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from project import ROOT, run


def _bench(tmp_path, script, *args):
    out = tmp_path / "out.json"
    run([sys.executable, str(ROOT / "bench" / script), *args, "--json", str(out)], ROOT, timeout=600)
    return json.loads(out.read_text())


def test_bench_at_step_reports_both_loops_and_their_ratio(tmp_path):
    r = _bench(tmp_path, "bench_at_step.py", "--device", "cpu", "--arch", "doracle_cnn_small", "--size", "8",
               "--batch", "16", "--steps", "2", "--repeats", "1", "--pgd-steps", "2")
    for method in ("pgd_at", "fgsm_rs"):
        m = r["results"][method]
        assert m["doracle_images_per_s"] > 0 and m["bare_images_per_s"] > 0
        assert m["ratio"] == pytest.approx(m["doracle_images_per_s"] / m["bare_images_per_s"])


def test_bench_epoch_counts_flops_and_throughput(tmp_path):
    r = _bench(tmp_path, "bench_epoch.py", "--device", "cpu", "--arch", "doracle_cnn_small", "--images", "64",
               "--batch", "32", "--pgd-steps", "2", "--peak-tflops", "1")
    fgsm, pgd = r["results"]["fgsm_rs"], r["results"]["pgd_at"]
    assert fgsm["images_per_s"] > 0 and fgsm["fifteen_epochs_seconds"] == pytest.approx(15 * fgsm["epoch_seconds"])
    assert pgd["flops_per_step"] > fgsm["flops_per_step"] > 0  # PGD-2 makes more passes than FGSM
    assert 0 < fgsm["fraction_of_peak"] < 1


@pytest.mark.slow
def test_bench_gan_gives_paired_differences_with_intervals_per_seed(tmp_path):
    tiny = {"data": {"max_train": 240}, "do": {"iterations": 1},
            "gan": {"warmup_epochs": 1, "pair_epochs": 1, "discriminator_epochs": 1, "payoff_latents": 100,
                    "reference": {"epochs": 1}, "metrics": {"samples": 60, "is_split_size": 30, "bootstrap": 20, "grid": 4}}}
    r = _bench(tmp_path, "bench_gan.py", "--seeds", "0", "--variant-seeds", "--set", json.dumps(tiny))
    assert set(r["runs"]) == {"default"}
    run0 = r["runs"]["default"]["0"]
    # warm-up 2 x 1, one pair of 1 epoch (2), the closing discriminator's 1: 5 player-epochs
    budget = {k: v for k, v in run0["budget"].items() if k != "base_gan_passes"}
    assert budget == {"do_player_epochs": 5, "base_gan_epochs": 3, "base_gan_player_epochs": 6}
    assert run0["budget"]["base_gan_passes"]["epochs"] == run0["base_gan_passes_epochs"]
    for k in ("fid", "recall", "coverage", "classes_covered"):
        d = run0["difference"][k]
        assert d["difference"] == pytest.approx(run0["do_mixture"][k] - run0["base_gan"][k])
        assert d["interval"][0] <= d["difference"] <= d["interval"][1]
        assert r["summary"]["default"][k]["mean"] == d["difference"]
    assert run0["passes"]["do_mixture"] > 0 and run0["passes"]["base_gan"] > 0
    d = run0["difference_passes"]["fid"]  # against the base GAN of as many counted passes as the DO run
    assert d["difference"] == pytest.approx(run0["do_mixture"]["fid"] - run0["base_gan_passes"]["fid"])
    assert run0["base_gan_passes_epochs"] >= 1 and r["summary"]["default"]["fid_passes"]["mean"] == d["difference"]
    assert run0["exploitability_stderr"] > 0


@pytest.mark.slow
def test_bench_gan_oracle_scores_each_config_on_the_payoff_split(tmp_path):
    tiny = {"data": {"max_train": 240}, "do": {"iterations": 1},
            "gan": {"warmup_epochs": 1, "pair_epochs": 1, "discriminator_epochs": 1, "payoff_latents": 100,
                    "reference": {"epochs": 1}}}
    configs = {"a": {}, "w0": {"gan": {"opponent_weight": 0.0}}}
    r = _bench(tmp_path, "bench_gan_oracle.py", "--seeds", "0", "--set", json.dumps(tiny), "--base-gan",
               "--configs", json.dumps(configs))
    assert r["configs"] == configs
    for name in configs:
        run0 = r["results"][name]["0"]
        assert run0["do_mixture"]["fid"] > 0 and run0["base_gan"]["fid"] > 0
        assert sum(run0["sigma_G"].values()) == pytest.approx(1.0) and len(run0["gaps"]) == 1
        assert set(run0["members"]) == {"g000", "g001"}
    # the stored-mixture weight changes the DO run, not the base GAN (the same budget, the same bits)
    assert r["results"]["a"]["0"]["base_gan"] == r["results"]["w0"]["0"]["base_gan"]
    assert r["results"]["a"]["0"]["members"]["g001"] != r["results"]["w0"]["0"]["members"]["g001"]


def test_bench_continue_compares_a_continued_pgd_at_with_one_from_scratch_on_the_payoff_split(tmp_path):
    r = _bench(tmp_path, "bench_continue.py", "--seeds", "0", "--base-epochs", "1", "--epochs", "1",
               "--max-train", "120")
    row = r["rows"][0]
    d = row["difference"]
    assert d["difference"] == pytest.approx(row["continued"] - row["scratch"], abs=1e-6)
    assert d["interval"][0] <= d["difference"] <= d["interval"][1] and d["examples"] > 300  # the payoff split
    assert r["mean_difference"] == d["difference"]


@pytest.mark.slow
def test_bench_do_gives_paired_worst_case_differences_per_seed_and_over_seeds(tmp_path):
    from project import TINY

    tiny = {k: v for k, v in TINY.items() if k not in ("experiment", "baselines")}
    # one iteration and the cheaper half of the suite: the script's logic needs any DO run and the
    # per-example worst cases (the shared run has the full tiny suite)
    tiny = {**tiny, "do": {**tiny["do"], "iterations": 1},
            "evaluation": {**tiny["evaluation"], "autoattack": None, "eps_curve": None}}
    r = _bench(tmp_path, "bench_do.py", "--seeds", "0", "--set", json.dumps(tiny))
    assert set(r["comparisons"]) == {"do_best_member", "pgd_at", "pgd_at_epochs", "pgd_at_passes", "trades"}
    for other, c in r["comparisons"].items():
        s = c["per_seed"][0]
        assert s["interval"][0] <= s["difference"] <= s["interval"][1] and s["examples"] == 60, other
        assert c["over_seeds"]["difference"] == pytest.approx(s["difference"])
        w = r["models"]["do_mixture"]["worst_case"][0] - r["models"][other]["worst_case"][0]
        assert s["difference"] == pytest.approx(w, abs=1e-6)  # the per-example scores average to the metrics
    assert r["models"]["pgd_at"]["passes_vs_pgd_at"] == [1.0]
    assert r["models"]["pgd_at_passes"]["passes_vs_pgd_at"][0] == pytest.approx(
        r["models"]["do_mixture"]["passes_vs_pgd_at"][0], rel=0.1)


def test_compare_runs_sets_aside_only_what_a_code_change_alone_changes(tmp_path):
    """bench/compare_runs.py: a changed source hash, seal, timing or JSON input digest is the same
    run; a changed value, tensor byte or tensor input digest, or a missing file, is not."""
    def write(root, doc, tensor=b"\x00\x01"):
        (root / "results/x").mkdir(parents=True)
        (root / "results/x/m.json").write_text(json.dumps(doc))
        (root / "results/x/m.safetensors").write_bytes(tensor)

    base = {"acc": 0.5, "provenance": {"version": "1", "source_sha256": "aa"}, "content_sha256": "s1",
            "inputs": {"results/x/p.json": "d1", "results/x/d.safetensors": "t1"}, "timing": {"eval_seconds": 1}}
    write(tmp_path / "a", base)
    write(tmp_path / "same", {**base, "provenance": {"version": "1", "source_sha256": "bb"}, "content_sha256": "s2",
                              "inputs": {"results/x/p.json": "d2", "results/x/d.safetensors": "t1"},
                              "timing": {"eval_seconds": 9}})
    write(tmp_path / "value", {**base, "acc": 0.6})
    write(tmp_path / "tensor_input", {**base, "inputs": {"results/x/p.json": "d1", "results/x/d.safetensors": "t2"}})
    write(tmp_path / "bytes", base, tensor=b"\x00\x02")
    out = tmp_path / "r.json"
    cmd = [sys.executable, str(ROOT / "bench" / "compare_runs.py"), str(tmp_path / "a")]
    assert run([*cmd, str(tmp_path / "same"), "--json", str(out)], ROOT).returncode == 0
    assert json.loads(out.read_text())["same"] == 2
    for other, bad in (("value", "m.json"), ("tensor_input", "m.json"), ("bytes", "m.safetensors")):
        proc = run([*cmd, str(tmp_path / other)], ROOT, check=False)
        assert proc.returncode == 1 and f"differs: results/x/{bad}" in proc.stdout, (other, proc.stdout)
    (tmp_path / "same/results/x/m.safetensors").unlink()
    proc = run([*cmd, str(tmp_path / "same")], ROOT, check=False)
    assert proc.returncode == 1 and "in one run only: results/x/m.safetensors" in proc.stdout


def test_bench_main_job_times_revisions_back_to_back_in_clones_of_their_own(tmp_path):
    """bench/bench_main_job.py: each revision cloned and run in a folder of its own, its wall and
    job-seconds (the benchmark files' sum) and both as ratios to the first; the kept clones hold the
    same artifacts for the same commit; a revision that is no commit is named."""
    cmd = [sys.executable, str(ROOT / "bench" / "bench_main_job.py"), "HEAD", "HEAD", "--keep", str(tmp_path / "runs"),
           "--target", "results/digits/data/dataset.safetensors", "--json", str(tmp_path / "rows.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [r["jobs"] for r in rows] == [1, 1] and all(r["job_seconds"] > 0 for r in rows)
    assert rows[0]["wall_ratio"] == 1.0 and rows[1]["wall_ratio"] == round(rows[1]["wall_seconds"] / rows[0]["wall_seconds"], 3)
    assert "| HEAD |" in proc.stdout and "job-seconds / HEAD" in proc.stdout
    one, two = (Path(r["folder"]) for r in rows)
    assert one != two and (one / "results/digits/data/dataset.safetensors").is_file()
    same = subprocess.run([sys.executable, str(ROOT / "bench" / "compare_runs.py"), str(one), str(two)],
                          capture_output=True, text=True)
    assert same.returncode == 0 and "2 the same, 0 different" in same.stdout, same.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_main_job.py"), "no-such-rev"], capture_output=True,
                         text=True, cwd=tmp_path)
    assert bad.returncode == 1 and "no-such-rev: not a commit" in bad.stderr
