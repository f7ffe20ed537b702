"""The real workflow, end to end, on a tiny configuration: Snakemake, then DVC on the same jobs.

The Snakemake run is the session's shared one (conftest.py ``shared``: read-only); a test that
runs a tool in the project (Snakemake, DVC) works on a copy of it (``shared_copy``)."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from doracle import artifacts
from doracle.artifacts import input_digest, read_json, timing_of, write_json
from project import as_dvc_cmd, params_with, run, sha, shared_params

pytestmark = pytest.mark.slow

EXP = "tiny"
# the shared run's AT params (defender best responses of 8 epochs, a checkpoint after each, for the
# SIGKILL test to catch one in training)
PARAMS = shared_params()
# the experiments' files of the shared project, as dvc.yaml's commands name them
FILES = {EXP: "params.yaml", "tinygan": "params-gan.yaml"}


@pytest.fixture(scope="module")
def snake(shared):
    """The shared run (read-only) and what its `snakemake -c2` printed."""
    return shared.path, SimpleNamespace(stdout=shared.output, stderr="")


def test_the_shared_run_is_read_only(shared):
    """Tests cannot change the tree others read: writing to it fails, for root too."""
    for target in (shared.path / "params.yaml", shared.path / "results" / EXP / "new.json"):
        with pytest.raises(OSError):
            target.write_text("x")
    assert shared.read_only_by == "mount" or os.geteuid() != 0


def test_main_job_outputs_metrics_and_report(snake):
    proj, proc = snake
    assert f"report at results/{EXP}/report/summary.md" in proc.stdout + proc.stderr
    m = json.loads((proj / f"results/{EXP}/metrics.json").read_text())
    assert set(m["models"]) == {"do_mixture", "do_best_member", "do_uniform", "erm", "pgd_at", "pgd_at_epochs",
                                "pgd_at_passes"}
    for r in m["models"].values():
        assert 0.0 <= r["clean_accuracy"] <= 1.0
        ra = r["robust_accuracy"]
        assert {"fgsm", "pgd", "arc", "autoattack", "worst_case"} <= set(ra)
        if len(r["members"]) > 1:
            assert {"pgd_per_member", "autoattack_per_member"} <= set(ra)
        assert ra["worst_case"] <= min(v for k, v in ra.items() if k != "worst_case") + 1e-12
        assert ra["worst_case"] <= r["clean_accuracy"] + 1e-12
        curve = r["robust_accuracy_curve"]["points"]
        assert [p["eps"] for p in curve] == ["0", "16/255", "32/255"]
        assert curve[0]["accuracy"] == pytest.approx(r["clean_accuracy"])
        assert r["checks"]["members"] and r["checks"]["warnings"] == []
    assert m["models"]["do_best_member"]["members"][0] in m["models"]["do_uniform"]["members"]
    assert timing_of(m, "models", "erm", "train_seconds") > 0
    # equal-compute accounting: every job that produced each model, as wall seconds and passes
    c = {k: v["compute"] for k, v in m["models"].items()}
    walls = {k: timing_of(m, "models", k, "compute", "wall_seconds") for k in c}
    assert c["erm"]["jobs"] == 1 and c["pgd_at"]["jobs"] == 1
    assert c["do_mixture"]["jobs"] == 1 + 1 + 2 * 5 + 1  # base, init, 2 iterations of 5 jobs, close
    assert c["do_mixture"] == c["do_best_member"] == c["do_uniform"]
    for k, v in c.items():
        assert walls[k] > 0 and v["forward_passes"] > 0 and v["backward_passes"] > 0
    # 1 epoch on 240 examples: ERM is one forward and one backward pass per example
    assert c["erm"]["forward_passes"] == c["erm"]["backward_passes"] == 240
    assert c["pgd_at"]["backward_passes"] > 2 * 240  # 2 PGD steps + the weight update
    assert c["do_mixture"]["passes"] > c["pgd_at"]["passes"]
    # the matched baselines: PGD-AT for DO's defender epochs in total (base 1 + 2 best responses of 8),
    # and for the whole DO run's counted passes, to within one batch; their compute is their own job's
    assert c["pgd_at_epochs"]["jobs"] == c["pgd_at_passes"]["jobs"] == 1
    side = {k: json.loads((proj / f"results/{EXP}/baselines/{k}/model.json").read_text()) for k in c if "_at_" in k}
    assert side["pgd_at_epochs"]["training"]["epochs"] == side["pgd_at_epochs"]["budget"]["do_defender_epochs"] == 17
    assert side["pgd_at_epochs"]["training"]["steps"] == 17 * 4  # 240 examples, batches of 64
    b = side["pgd_at_passes"]["budget"]
    assert b["do_passes"] == c["do_mixture"]["passes"] and side["pgd_at_passes"]["training"]["steps"] == b["steps"]
    assert abs(c["pgd_at_passes"]["passes"] - c["do_mixture"]["passes"]) <= b["passes_per_example"] * 64
    assert c["pgd_at_passes"]["passes"] == pytest.approx(b["passes_per_example"] * 240 * (b["steps"] // 4), rel=0.05)
    # each job's compute is counted once: iteration 0's population adds only its payoff cell
    # (one forward pass per payoff example); the attack's own passes are in the attacker's sidecar
    it0 = json.loads((proj / f"results/{EXP}/do/it000/population.json").read_text())
    assert it0["compute"] == {"forward_passes": it0["payoff_n"], "backward_passes": 0}
    do = m["double_oracle"]
    assert do["iterations_run"] == 2 and isinstance(do["converged"], bool)
    assert do["status"] in ("converged", "within_noise", "not_converged")
    assert do["converged"] == (do["status"] == "converged")
    # ~360 payoff examples per cell: far too few to certify a tolerance of 0.005
    assert do["status"] != "converged" and do["final_gap_stderr"] > 0.01
    assert do["support_size"] >= 1 and do["final_gap"] >= 0
    tm = m["threat_model"]
    assert tm["norm"] == "linf" and tm["eps"] == "32/255" and tm["n_examples"] == 60 and isinstance(tm["seed"], int)
    assert tm["attacks"]["pgd"]["steps"] == 3 and tm["autoattack"]["package"] == "pyautoattack"
    rep = proj / f"results/{EXP}/report"
    text = (rep / "summary.md").read_text()
    assert "do_mixture" in text and "pgd_at" in text and "32/255" in text
    assert f"status: **{do['status']}**" in text
    assert "| jobs | wall s | passes |" in text
    assert re.search(r"^\| erm \|.*\| 1 \| [\d.]+ \| 480 \|$", text, re.M), "ERM: 1 job, 240 + 240 passes"
    for png in ("payoff_heatmap.png", "meta_strategy.png", "do_gap.png", "do_value.png", "robustness_curve.png"):
        assert (rep / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    headline = json.loads((proj / f"results/{EXP}/headline.json").read_text())
    assert headline["do_mixture_worst_case"] == m["models"]["do_mixture"]["robust_accuracy"]["worst_case"]
    assert headline["do_gap"] == do["final_gap"] and headline["erm_clean_accuracy"] == m["models"]["erm"]["clean_accuracy"]
    # the closing attacker answered the final sigma_D: its gain is the DO mixture's exploitability
    assert do["closing"]["id"] == "a003" and do["closing"]["deployed"] == "defender"
    assert (headline["do_exploitability"], headline["do_exploitability_stderr"]) == (
        do["exploitability"], do["exploitability_stderr"])
    assert f"exploitability of the deployed defender mixture: **{do['exploitability']:.4f}" in text
    assert all(isinstance(v, int | float) and "second" not in k for k, v in headline.items())
    # paired worst-case comparisons over the same test examples, each with its 95 % interval
    comps = m["comparisons"]
    assert set(comps) == {f"do_mixture - {k}" for k in m["models"] if k != "do_mixture"}
    ev = {k: json.loads((proj / f"results/{EXP}/evaluation/{d}/{k}.json").read_text())["worst_case_per_example"]
          for k, d in (("do_mixture", "do"), ("pgd_at", "baselines"))}
    assert len(ev["pgd_at"]) == 60 and sum(ev["pgd_at"]) / 60 == pytest.approx(m["models"]["pgd_at"]["robust_accuracy"]["worst_case"])
    c = comps["do_mixture - pgd_at"]
    assert c["difference"] == pytest.approx(sum(ev["do_mixture"]) / 60 - sum(ev["pgd_at"]) / 60)
    assert c["interval"][0] <= c["difference"] <= c["interval"][1] and c["examples"] == 60
    # sigma's stability and the attackers' transfer, in metrics.json and in the report
    st = do["sigma_stability"]
    assert set(st["row"]) == set(pop_ids := json.loads((proj / f"results/{EXP}/do/closing/population.json").read_text())[
        "state"]["row_ids"]) and all(0 <= r["in_support"] <= 1 for r in st["row"].values())
    assert all(r["interval"][0] <= r["interval"][1] for r in st["row"].values()) and pop_ids
    assert all(0 <= t["accuracy_targets"] <= 1 and set(t["targets"]) < set(pop_ids) for t in m["transfer"].values())
    for section in ("### Paired comparisons (worst case)", "### Baselines matched to the DO run's budget",
                    "### Meta-strategy stability", "| do_mixture - pgd_at_passes |"):
        assert section in text, section
    assert ("### Transfer of the attackers" in text) == bool(m["transfer"])
    # do_uniform mixes every final defender: the members' disagreement on its PGD examples is reported
    assert 0 <= m["models"]["do_uniform"]["diagnostics"]["disagreement_pgd"] <= 1
    assert "### Members' disagreement" in text and "| do_uniform | pgd |" in text


def test_every_job_has_a_log_and_a_benchmark(snake):
    proj, _ = snake
    logs = list((proj / "logs" / EXP).rglob("*.log"))
    benches = list((proj / "benchmarks" / EXP).rglob("*.tsv"))
    # data, base, 2 + 2 matched baselines, init, 2 x 5 DO jobs, close, 3 + 4 evaluations, metrics, report
    assert len(logs) == len(benches) == 27
    for b in benches:
        rows = list(csv.DictReader(io.StringIO(b.read_text()), delimiter="\t"))
        assert float(rows[0]["s"]) > 0


def test_artifacts_record_params_seed_and_input_hashes(snake):
    proj, _ = snake
    res = proj / "results" / EXP
    for side in list(res.rglob("model.json")) + list(res.rglob("defender.json")) + list(res.rglob("attacker.json")):
        meta = json.loads(side.read_text())
        assert isinstance(meta["seed"], int) and meta["params"]
        assert meta["sha256"] == sha(side.with_suffix(".safetensors"))
        for path, digest in meta["inputs"].items():
            # inputs are upstream artifacts, unchanged since they were read (JSON: their content hash)
            assert input_digest(proj / path) == digest, path
    pop = json.loads((res / "do/it002/population.json").read_text())
    for sid, ref in pop["all_strategies"].items():
        assert sha(proj / ref["path"]) == ref["sha256"], sid
    # every JSON artifact names its experiment and the code that wrote it, and is sealed (the
    # report's plot tables and headline.json are flat files for DVC, made from sealed ones)
    from doracle import provenance

    docs = [f for f in res.rglob("*.json") if "report" not in f.parts and f.name != "headline.json"]
    assert len(docs) >= 20  # data, models, strategies, population, payoff, meta, evaluations, metrics
    for f in docs:
        doc = read_json(f)  # the seal checked
        assert doc["experiment"] == EXP and artifacts.SEAL in doc, f
        assert doc["provenance"] == {"version": provenance.version(), "source_sha256": provenance.source_sha256()}, f
    assert not list(res.rglob("*.tmp")), "temporary files left behind"
    # no pickle anywhere: weights are safetensors, everything else JSON
    # (Snakemake marks a finished folder output, the report, with its own .snakemake_timestamp;
    # doracle marks the folders it writes whole with artifacts.FOLDER_MARKER; params.yaml is the
    # params file the jobs read, as the workflow wrote it)
    assert (res / "params.yaml").is_file() and (res / "report" / artifacts.FOLDER_MARKER).read_text() == "report\n"
    assert {p.suffix for p in res.rglob("*") if p.is_file() and p.name not in (".snakemake_timestamp",
            artifacts.FOLDER_MARKER) and p != res / "params.yaml"} <= {".safetensors", ".json", ".md", ".png",
                                                                      ".html", ".csv"}
    assert not list(res.rglob("*.state.json")), "evaluation states are removed after success"


def test_second_run_is_a_noop(shared_copy):
    proj = shared_copy
    before = {p: p.stat().st_mtime_ns for p in (proj / "results").rglob("*") if p.is_file()}
    proc = run(["snakemake", "-c2"], proj)
    assert "Nothing to be done" in proc.stdout + proc.stderr
    after = {p: p.stat().st_mtime_ns for p in (proj / "results").rglob("*") if p.is_file()}
    assert before == after


def test_an_override_reruns_only_the_jobs_that_read_it(shared_copy):
    """After a plain run, `--config 'nas={enabled: true}'` (the defender searches architectures)
    plans the defender best responses and what depends on them, nothing upstream: the jobs read the
    same params file path either way (results/<exp>/params.yaml), so only `tracked` params decide."""
    proj = shared_copy
    out = run(["snakemake", "-n", "--configfile", "params.yaml", "--config", "nas={enabled: true}"], proj).stdout
    table = out[out.index("Job stats:"):]
    counts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}
    assert counts["best_response"] == 3  # the defender's of it001 and it002, it002's attacker (new state)
    assert not {"prepare_data", "train", "do_init"} & set(counts), counts
    assert counts["evaluate_do"] == 3 and counts["metrics"] == 1
    # of the baselines, only the two matched to the DO run's budget (they read the closed population)
    assert counts["train_baseline"] == counts["evaluate_baseline"] == 2


def test_converged_state_passes_later_iterations_through(snake, tmp_path):
    """After convergence the DAG keeps its shape: every later job writes a pass-through artifact."""
    proj, _ = snake
    res = proj / "results" / EXP
    pop = json.loads((res / "do/it001/population.json").read_text())
    pop["state"]["converged"] = True
    state = tmp_path / "population.json"
    write_json(state, pop)  # re-sealed: an edit by a test, not by hand
    data = res / "data/dataset.safetensors"

    def cli(*args):
        return run([sys.executable, "-m", "doracle", *map(str, args), "--params", "params.yaml"], proj)

    d, a = tmp_path / "d.safetensors", tmp_path / "a.safetensors"
    cli("do", "best-response", "--player", "defender", "--data", data, "--state", state, "--iteration", 2, "--out", d)
    cli("do", "best-response", "--player", "attacker", "--data", data, "--state", state, "--iteration", 2, "--out", a)
    assert json.loads(d.with_suffix(".json").read_text())["skipped"] is True
    assert json.loads(a.with_suffix(".json").read_text())["skipped"] is True
    pay, meta, out = tmp_path / "payoff.json", tmp_path / "meta.json", tmp_path / "out.json"
    cli("do", "payoff", "--data", data, "--state", state, "--iteration", 2, "--row", d, "--col", a, "--out", pay)
    cli("do", "solve", "--state", state, "--payoff", pay, "--out", meta)
    cli("do", "prune", "--state", state, "--payoff", pay, "--meta", meta, "--out", out)
    assert json.loads(pay.read_text())["cells_evaluated"] == 0
    new = json.loads(out.read_text())
    assert new["state"]["converged"] is True and new["passed_through"] == [2]
    assert new["state"]["payoff"] == pop["state"]["payoff"] and new["state"]["iteration"] == 2


def test_snakemake_jobs_and_dvc_stages_never_drift(shared_copy):
    """Snakemake's own record of the jobs it ran (command, inputs, outputs) equals dvc.yaml's stages,
    for both experiments of the shared run."""
    proj = shared_copy
    summary = run(["snakemake", "--detailed-summary"], proj).stdout
    jobs: dict[str, dict] = {}
    for row in csv.DictReader(io.StringIO(summary), delimiter="\t"):
        if row["rule"] == "all":
            continue
        job = jobs.setdefault(as_dvc_cmd(row["shellcmd"], FILES), {"outs": set(), "deps": set()})
        job["outs"].add(row["output_file"])
        job["deps"] |= {x for x in row["input-file(s)"].split(",") if x}
    stages = yaml.safe_load((proj / "dvc.yaml").read_text())["stages"]
    stages.pop("check_dag")  # DVC's guard against a stale dvc.yaml: no Snakemake job
    # the stages' deps on the code they run (src/doracle/...) are Snakemake's `code` params
    dvc = {s["cmd"]: {"outs": set(s["outs"]), "deps": {d for d in s["deps"] if not d.startswith("src/doracle/")}}
           for s in stages.values()}
    # AT: data, base, 2 + 2 matched baselines, init, 2 x 5 DO jobs, close, 3 + 4 evaluations, metrics, report;
    # GAN: data, reference, 2 base GANs, init, 2 x 4 DO jobs (the co-trained pair is one), close, 2 + 2
    # evaluations, metrics, report
    assert len(dvc) == len(stages) == (1 + 1 + 4 + 1 + 5 * 2 + 1 + 3 + 4 + 1 + 1) + (
        1 + 1 + 2 + 1 + 4 * 2 + 1 + 2 + 2 + 1 + 1)
    assert jobs == dvc


def best_response(proj, tmp_path, player: str, overrides: dict) -> dict:
    """Run one real best-response job on iteration 1's state with params changed by ``overrides``."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    pf = tmp_path / "params.yaml"
    pf.write_text(yaml.safe_dump(params_with(overrides)))
    res = proj / "results" / EXP
    out = tmp_path / f"{player}.safetensors"
    run([sys.executable, "-m", "doracle", "do", "best-response", "--player", player, "--params", str(pf),
         "--data", str(res / "data/dataset.safetensors"), "--state", str(res / "do/it001/population.json"),
         "--iteration", "2", "--out", str(out)], proj)
    return {"meta": json.loads(out.with_suffix(".json").read_text()), "path": out}


@pytest.mark.parametrize("attack", ["langevin", "l2l", "arc"])
def test_attacker_families_as_double_oracle_best_responses(snake, tmp_path, attack):
    """Any registered attack is an attacker strategy family: its best response against the
    defender mixture is cached like PGD's and stays inside the threat model."""
    from safetensors.torch import load_file

    spec = {"name": attack, "steps": 20, "rel_step_size": 0.25, "restarts": 1, "random_start": True}
    # iteration 2 of 3: a defender best response follows, so the training split is cached too
    out = best_response(snake[0], tmp_path, "attacker", {"do": {"iterations": 3, "attacker": {"attack": spec}}})
    meta = out["meta"]
    assert meta["attack"]["name"] == attack and meta["nan_count"] == 0
    assert meta["max_perturbation"] <= 32 / 255 + 1e-6
    assert meta["target_expected_accuracy_payoff"] < 0.95  # it attacks
    t = load_file(out["path"])
    assert set(t) == {"x_train", "x_payoff"} and t["x_payoff"].min() >= 0 and t["x_payoff"].max() <= 1


@pytest.mark.parametrize("defense", ["trades", "dale", "amp", "l2l", "local_ball", "fgsm_rs"])
def test_every_method_is_a_defender_oracle(snake, tmp_path, defense):
    meta = best_response(snake[0], tmp_path, "defender", {"do": {"defender": {"defense": defense, "epochs": 3}}})["meta"]
    assert meta["defense"] == defense and meta["opponent"]["ids"]
    assert all(v == v for v in meta["training"]["loss_history"])  # no NaN
    assert meta["training"]["train_accuracy"] > 0.3


def test_warm_started_defender_starts_from_the_best_member(snake, tmp_path):
    """With a negligible learning rate the warm-started best response stays on the best member's
    weights (a cold start does not); the artifact records which member it started from."""
    from safetensors.torch import load_file

    from doracle.games.population import best_member, read_population

    proj = snake[0]
    state, doc = read_population(proj / "results" / EXP / "do/it001/population.json")
    start = best_member(state)
    member = load_file(proj / doc["strategies"][start]["path"])
    for warm in (True, False):
        out = best_response(proj, tmp_path / str(warm), "defender",
                            {"training": {"lr": 1e-9}, "do": {"defender": {"warm_start": warm, "epochs": 1}}})
        assert out["meta"].get("warm_start_from") == (start if warm else None)
        w = load_file(out["path"])
        diff = max(float((w[k] - member[k]).abs().max()) for k in member)
        assert (diff < 1e-4) if warm else (diff > 1e-2), diff


# ----------------------------------------------------------------------------- reliability (docs/reliability.md)


def test_jobs_ran_only_the_code_their_rule_declares(shared):
    """Every module a job loaded (DORACLE_MODULES_LOG) is among the package paths its rule runs
    (the job table's ``code``): the code a Snakemake param and the DVC deps cover."""
    from doracle import jobtable

    rule_of = {}  # subcommand -> the first rule that calls it (train, evaluate: two rules, the same code)
    for rule, shape in jobtable.SHAPES.items():
        rule_of.setdefault(shape.command, rule)
    assert jobtable.SHAPES["train"].code == jobtable.SHAPES["train_baseline"].code
    assert jobtable.SHAPES["evaluate_do"].code == jobtable.SHAPES["evaluate_baseline"].code
    seen = set()
    for line in shared.modules.read_text().splitlines():
        rec = json.loads(line)
        argv = rec["argv"]
        rule = rule_of.get(tuple(argv[:2])) or rule_of[tuple(argv[:1])]
        seen.add(rule)
        declared = jobtable.code_paths(rule)
        stray = [m for m in rec["modules"]
                 if not any(m == d or m.startswith(d.rstrip("/") + "/") for d in declared)]
        assert not stray, f"{rule} ran {stray}, which the job table's {rule!r} does not declare"
    assert seen == set(rule_of.values())


@pytest.mark.parametrize("damage", ["truncate", "bitflip", "edit_payoff", "other_experiment"])
def test_damaged_artifacts_are_refused_naming_the_file_and_what_to_rerun(snake, tmp_path, damage):
    """A truncated or bit-flipped checkpoint, a payoff file edited by hand, a checkpoint copied from
    another experiment: the job that reads it exits 2 naming the file and the command to rerun."""
    proj = snake[0]
    res = tmp_path / "results" / EXP
    shutil.copytree(proj / "results" / EXP, res)
    pf = res / "params.yaml"
    if damage in ("truncate", "bitflip", "other_experiment"):
        bad = res / "baselines/erm/model.safetensors"
        if damage == "truncate":
            bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
        elif damage == "bitflip":
            data = bytearray(bad.read_bytes())
            data[len(data) // 2] ^= 0x10
            bad.write_bytes(bytes(data))
        else:  # the same file under another experiment's name: its sidecar says so
            meta = json.loads(bad.with_suffix(".json").read_text())
            meta["experiment"] = "other"
            from doracle.artifacts import write_json

            write_json(bad.with_suffix(".json"), meta)
        cmd = ["evaluate", "--params", pf, "--data", res / "data/dataset.safetensors", "--model", "erm",
               "--checkpoint", bad, "--out", tmp_path / "erm.json"]
        out = tmp_path / "erm.json"
    else:
        bad = res / "do/it002/payoff.json"
        doc = json.loads(bad.read_text())
        doc["payoff"][0][0] = 1.0 - doc["payoff"][0][0]
        bad.write_text(json.dumps(doc, indent=1))
        cmd = ["do", "solve", "--params", pf, "--state", res / "do/it001/population.json", "--payoff", bad,
               "--out", tmp_path / "meta.json"]
        out = tmp_path / "meta.json"
    proc = run([sys.executable, "-m", "doracle", *map(str, cmd)], tmp_path, check=False)
    assert proc.returncode == 2, proc.stderr
    assert str(bad.with_suffix("")) in proc.stderr and "--forcerun" in proc.stderr, proc.stderr  # .json: its sidecar
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    expected = {"truncate": "does not match", "bitflip": "does not match", "edit_payoff": "edited by hand",
                "other_experiment": "written by experiment 'other'"}[damage]
    assert expected in proc.stderr, proc.stderr


ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def test_html_report_renders_offline_from_a_copied_folder(snake, chromium, tmp_path):
    """index.html of the tiny run, opened by headless Chromium from a copy of results/tiny/ with
    every non-file request refused: every image loads, the methods table has a row per model, every
    link is relative and resolves inside the copy. The screenshot is kept at test-artifacts/report.png
    (repository root, ignored by git; CI keeps the folder)."""
    proj, _ = snake
    copy = tmp_path / "elsewhere" / EXP
    shutil.copytree(proj / "results" / EXP, copy)
    models = list(json.loads((copy / "metrics.json").read_text())["models"])
    page = chromium.new_page(viewport={"width": 1280, "height": 900})
    outside = []

    def route(r):
        if r.request.url.startswith(("file:", "data:")):
            return r.continue_()
        outside.append(r.request.url)
        return r.abort()

    page.route("**/*", route)
    page.goto((copy / "report" / "index.html").as_uri())
    page.wait_for_load_state("load")
    images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth, "
                           "i.getAttribute('src').slice(0, 22)])")
    assert len(images) >= 5, images
    assert all(done and width > 0 and src == "data:image/png;base64," for _, done, width, src in images), images
    rows = page.locator("#methods tbody tr").all()
    assert [r.locator("td").first.inner_text() for r in rows] == models
    assert outside == [], "the report fetched from the network"
    hrefs = page.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.getAttribute('href'))")
    files = [h for h in hrefs if not h.startswith("#")]
    assert "../metrics.json" in files and "../do/it002/payoff.json" in files and "../headline.json" in files
    for h in files:
        assert ":" not in h and not h.startswith("/"), h
        assert (copy / "report" / h).resolve().is_file(), h
    body = page.inner_text("body")
    assert "resolved params" in body and "Pruning" in body and "Double oracle" in body
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    page.close()
    assert (ARTIFACTS / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _snakemake_report_files(page: str) -> dict[str, bytes]:
    """The files Snakemake's report embeds (its ``var results = {...}`` table), decoded, by path."""
    import base64

    start = page.index("var results = {") + len("var results = ")
    table = json.loads(page[start:page.index("</script>", start)].strip().rstrip(";"))
    return {path: base64.b64decode(r["data_uri"].split("base64,", 1)[1]) for path, r in table.items()}


def test_snakemake_report_holds_the_methods_table_and_every_plot(shared_copy):
    """`snakemake --report`: the outputs the report rule marks (workflow/report/ captions) are in
    Snakemake's page: every PNG of the report folder, the methods table (methods.csv), index.html."""
    proj = shared_copy
    run(["snakemake", "--report", "report.html"], proj)
    page = (proj / "report.html").read_text()
    embedded = _snakemake_report_files(page)
    rep = proj / "results" / EXP / "report"
    pngs = sorted(rep.glob("*.png"))
    assert len(pngs) >= 5
    marked = [*pngs, rep / "methods.csv", rep / "index.html"]
    ours = {path for path in embedded if path.startswith(f"results/{EXP}/")}
    assert ours == {str(f.relative_to(proj)) for f in marked}
    gan = proj / "results/tinygan/report"  # the other experiment's report, by the same patterns
    assert {path for path in embedded if path not in ours} == {
        str(f.relative_to(proj)) for ext in ("png", "csv", "html") for f in gan.glob(f"*.{ext}")}
    for f in marked:
        assert embedded[str(f.relative_to(proj))] == f.read_bytes(), f.name
    table = (rep / "methods.csv").read_text().splitlines()
    assert table[0].startswith("model,clean,FGSM,PGD,ARC,AutoAttack,worst case")
    assert [r.split(",")[0] for r in table[1:]] == list(json.loads((rep.parent / "metrics.json").read_text())["models"])
    assert "Payoff matrix of the final populations" in page  # a caption


def test_report_out_refuses_a_folder_it_did_not_write(shared_copy):
    """`doracle report --out results/tiny` (a whole experiment) and `--out` of a hand-made folder
    exit 2 naming the folder, with every file left as it was; over its own report it works."""
    res = shared_copy / "results" / EXP
    before = {p: p.read_bytes() for p in res.rglob("*") if p.is_file()}
    base = ["doracle", "report", "--params", f"{res}/params.yaml", "--metrics", f"{res}/metrics.json",
            "--population", f"{res}/do/closing/population.json", "--payoff", f"{res}/do/it002/payoff.json"]
    (shared_copy / "mine").mkdir()
    (shared_copy / "mine" / "notes.txt").write_text("mine")
    for out in (res, shared_copy / "mine", res / "do"):
        proc = run([*base, "--out", str(out)], shared_copy, check=False)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        why = "refusing to replace it" if out.name == "mine" else "holds the input"
        assert f"--out {out}" in proc.stderr and why in proc.stderr, proc.stderr
    assert {p: p.read_bytes() for p in res.rglob("*") if p.is_file()} == before
    assert (shared_copy / "mine" / "notes.txt").read_text() == "mine"
    run([*base, "--out", str(res / "report")], shared_copy)
    assert (res / "report" / "index.html").is_file() and not list(res.rglob("*.tmp"))
