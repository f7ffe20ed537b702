"""The GAN game on the game-generic job layer: the registry of games, the GAN jobs on artifacts
(init, best responses, payoff, evaluation, metrics, report) and the real pipeline (Snakemake, then
DVC on the same jobs) on a tiny configuration."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from doracle import config, pipeline
from doracle.artifacts import write_json
from doracle.errors import ConfigError
from doracle.games import GAMES, Game, game_of
from doracle.games.gan.arithmetic import fixed_latents, payoff_cell
from project import ROOT, body, gan_params


def sha(p: Path) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


# ----------------------------------------------------------------------------- the registry of games


def test_games_are_dispatched_by_name():
    assert GAMES.names() == ["at", "gan"]
    at, gan = config.validate({}), config.validate(gan_params())
    assert game_of(at).players == ("defender", "attacker")
    assert game_of(gan).players == ("discriminator", "generator")  # the row player maximises V
    with pytest.raises(ConfigError, match=r"game: unknown game 'chess'; valid names: at, gan"):
        config.validate({"game": "chess"})


def test_a_third_game_is_one_registered_class():
    """The job layer knows no game: a new Game subclass gets the whole DAG (and its DVC stages)."""

    class Toy(Game):
        name = "toy"
        players = ("row", "column")
        id_prefixes = ("r", "c")
        deployed = "row"
        stage_params = {"train": ("seed",), "judge": ("seed",), "init": ("seed",), "best_response_row": ("seed",),
                        "best_response_column": ("seed",), "payoff": ("seed",), "closing": ("seed",),
                        "evaluate": ("seed",),
                        "metrics": ("seed",), "baseline": ("seed",), "report": ("experiment",)}

        def train_roles(self, params):
            return ("judge",)

        def eval_roles(self, params):
            return ("judge",)

        def baselines(self, params):
            return ("naive",)

        def targets(self, params):
            return ("do_mixture",)

    GAMES.register("toy")(Toy())
    try:
        p = config.validate({"experiment": "toy", "game": "toy", "do": {"iterations": 2}})
        jobs = {j["name"]: j for j in pipeline.jobs(p)}
        assert {"train_judge", "train_baseline_naive", "do_init", "best_response_row_it001",
                "best_response_column_it002", "payoff_it002", "close", "evaluate_do_mixture",
                "evaluate_baseline_naive", "metrics", "report"} <= set(jobs)
        # the closing step answers the deployed row player's last meta-strategy; evaluation reads its population
        assert Toy().closing_player == "column"
        assert jobs["close"]["inputs"]["state"] == "results/toy/do/it002/population.json"
        assert jobs["evaluate_do_mixture"]["inputs"]["population"] == jobs["close"]["outputs"]["population"]
        assert jobs["payoff_it001"]["inputs"]["row"] == "results/toy/do/it001/row.safetensors"
        assert "--uses judge=results/toy/judge/model.safetensors" in jobs["evaluate_do_mixture"]["cmd"]
        assert Toy().strategy_id("column", 3) == "c003"
        stages = pipeline.dvc_stages([(p, "params.yaml")])["stages"]
        assert stages["best_response_row_it001"]["params"] == ["seed"]
    finally:
        GAMES._entries.pop("toy")


def test_the_cli_refuses_another_games_player_and_role(cli, tmp_path):
    pf = tmp_path / "p.yaml"
    pf.write_text(yaml.safe_dump(gan_params()))
    proc = cli("do", "best-response", "--player", "defender", "--params", pf, "--data", "x", "--state", "y",
               "--iteration", 1, "--out", tmp_path / "o.safetensors")
    assert proc.returncode == 2 and "the gan game's players are discriminator, generator" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = cli("train", "--role", "base", "--params", pf, "--data", "x", "--out", tmp_path / "m.safetensors")
    assert proc.returncode == 2 and "trains reference, baseline" in proc.stderr
    assert not list(tmp_path.glob("*.safetensors"))


@pytest.mark.parametrize("over,msg", [
    ({"batch_size": 1}, "gan.batch_size: Input should be greater than or equal to 2"),
    ({"metrics": {"samples": 5, "nearest_k": 5}}, "metrics.samples (5) must exceed metrics.nearest_k (5)"),
    ({"generator": "doracle_disc_dcgan"}, "unknown generator 'doracle_disc_dcgan'"),
    ({"warmup_epochs": -1}, "gan.warmup_epochs: Input should be greater than or equal to 0"),
])
def test_bad_gan_params_are_refused_naming_the_key(cli, tmp_path, over, msg):
    raw = gan_params()
    raw["gan"] = {**raw["gan"], **over, "metrics": {**raw["gan"]["metrics"], **over.get("metrics", {})}}
    pf = tmp_path / "p.yaml"
    pf.write_text(yaml.safe_dump(raw))
    proc = cli("check-params", "--params", pf)
    assert proc.returncode == 2 and msg in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_a_job_missing_a_model_it_uses_says_which(cli, tmp_path):
    pf = tmp_path / "at.yaml"
    pf.write_text((ROOT / "params.yaml").read_text())
    proc = cli("do", "init", "--params", pf, "--data", "x", "--init-out", tmp_path / "i.safetensors",
               "--out", tmp_path / "p.json")
    assert proc.returncode == 2 and "this job needs --uses base=PATH" in proc.stderr
    assert "Traceback" not in proc.stderr and not list(tmp_path.glob("[ip].*"))


def test_each_gan_stage_tracks_only_what_it_reads():
    """Changing how generators are scored reruns the scoring jobs, never the training ones."""
    a = config.validate(gan_params())
    raw = gan_params()
    raw["gan"] = {**raw["gan"], "metrics": {**raw["gan"]["metrics"], "grid": 25, "samples": 500}}
    b = config.validate(raw)
    same = [("do_init", {}), ("best_response", {"player": "generator"}), ("best_response", {"player": "discriminator"}),
            ("payoff", {}), ("train_baseline", {}), ("train", {"role": "reference"}), ("metrics", {})]
    for rule, wc in same:
        assert pipeline.tracked(a, rule, wc) == pipeline.tracked(b, rule, wc), rule
    assert pipeline.tracked(a, "evaluate_do", {}) != pipeline.tracked(b, "evaluate_do", {})
    # the grids are drawn by the evaluation jobs; the report (torch-free) only plots them
    assert pipeline.tracked(a, "report", {}) == pipeline.tracked(b, "report", {})
    raw["gan"]["generator_epochs"] = 7
    c = config.validate(raw)
    assert pipeline.tracked(a, "best_response", {"player": "generator"}) != pipeline.tracked(
        c, "best_response", {"player": "generator"})
    assert pipeline.tracked(a, "best_response", {"player": "discriminator"}) == pipeline.tracked(
        c, "best_response", {"player": "discriminator"})
    assert pipeline.tracked(a, "train_baseline", {}) != pipeline.tracked(c, "train_baseline", {})  # same budget


# ----------------------------------------------------------------------------- jobs on artifacts


def run_first_iteration(p) -> dict:
    """Data, reference classifier, init, one DO iteration (the co-trained pair, payoff, solve, prune)
    and the closing step in process, at the pipeline's paths below the working directory; returns
    the paths."""
    from doracle.data import prepare
    from doracle.games.gan import jobs as gan
    from doracle.games.population import prune, solve_meta

    P = {k: v.replace("{exp}", p.experiment) for k, v in pipeline.PATTERNS.items()}
    f = {"data": P["data"], "ref": P["model"].format(role="reference"), "init": P["init"],
         "pop0": P["population"].format(it="000"), "pair": P["strategy"].format(it="001", player="pair"),
         "pay": P["payoff"].format(it="001"), "meta": P["meta"].format(it="001"),
         "pop1": P["population"].format(it="001"), "closing": P["closing_model"], "closed": P["closed"],
         "base": P["baseline"].format(method="base_gan")}
    prepare(p, f["data"])
    gan.train_reference(p, f["data"], f["ref"])
    gan.init(p, f["data"], f["init"], f["pop0"])
    gan.best_response(p, "pair", f["data"], f["pop0"], 1, f["pair"])
    gan.payoff(p, f["data"], f["pop0"], 1, f["pair"], f["pair"], f["pay"])
    solve_meta(p, f["pop0"], f["pay"], f["meta"])
    prune(p, f["pop0"], f["pay"], f["meta"], f["pop1"])
    gan.close(p, f["data"], f["pop1"], f["closing"], f["closed"])
    return f


@pytest.fixture(scope="module")
def jobs_dir(tmp_path_factory):
    """Data, reference classifier, init, one DO iteration (the co-trained pair, payoff, solve,
    prune), the closing step and the base GAN, run in-process on the tiny configuration, at the pipeline's paths
    (metrics add up the compute of the jobs upstream of each model)."""
    import os

    from doracle.games.gan import jobs as gan

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("ganjobs")
    cwd = os.getcwd()
    os.chdir(d)
    p = config.validate(gan_params(do={"iterations": 1, "tolerance": 0.01}))
    try:
        f = run_first_iteration(p)
        gan.train_base_gan(p, f["data"], f["base"])
        yield p, f, d
    finally:
        os.chdir(cwd)


@pytest.fixture
def jobs(jobs_dir, monkeypatch):
    """(params, paths relative to the project) with the project as working directory, as the
    pipeline runs its jobs (populations record relative paths)."""
    p, f, d = jobs_dir
    monkeypatch.chdir(d)
    return p, f


def test_init_is_a_warm_up_pair_and_its_payoff_cell(jobs):
    from doracle.data import load
    from doracle.games.gan.jobs import load_net

    p, f = jobs
    pop = json.loads(Path(f["pop0"]).read_text())
    assert pop["game"] == "gan" and pop["state"]["row_ids"] == ["d000"] and pop["state"]["col_ids"] == ["g000"]
    refs = pop["strategies"]
    assert refs["d000"]["path"] == refs["g000"]["path"] == f["init"]
    assert (refs["d000"]["player"], refs["g000"]["player"]) == ("discriminator", "generator")
    ds = load(f["data"], "cpu")
    g, dnet = load_net(f["init"], "generator", "cpu"), load_net(f["init"], "discriminator", "cpu")
    cell = payoff_cell(g, dnet, ds.x["payoff"], fixed_latents(pipeline_seed(p), 200, 100))
    assert pop["state"]["payoff"] == [[cell.value]] and pop["payoff_stderr"] == [[cell.stderr]]
    assert pop["payoff_n"] == len(ds.y["payoff"]) + 200
    meta = json.loads(Path(f["init"]).with_suffix(".json").read_text())
    assert meta["training"]["updates"]["generator"] == meta["training"]["updates"]["discriminator"] > 0


def pipeline_seed(p):
    from doracle import runtime

    return runtime.derive_seed(p.seed, "payoff_latents")


def test_the_init_job_is_reproducible_bit_for_bit(jobs, tmp_path):
    from doracle.games.gan import jobs as gan

    p, f = jobs
    gan.init(p, f["data"], str(tmp_path / "init.safetensors"), str(tmp_path / "pop0.json"))
    assert sha(tmp_path / "init.safetensors") == sha(f["init"])
    again = json.loads((tmp_path / "pop0.json").read_text())
    assert again["state"] == json.loads(Path(f["pop0"]).read_text())["state"]


def test_the_cotrained_pair_plays_both_opponent_mixtures_from_a_warm_start(jobs):
    p, f = jobs
    meta = json.loads(Path(f["pair"]).with_suffix(".json").read_text())
    assert meta["role"] == "pair" and list(meta["nets"]) == ["generator", "discriminator"]
    assert meta["opponent"] == {"generator": {"ids": ["d000"], "probs": [1.0]},
                                "discriminator": {"ids": ["g000"], "probs": [1.0]}}
    assert meta["warm_start_from"] == {"generator": "g000", "discriminator": "d000"}
    t = meta["training"]
    assert t["updates"]["generator"] == t["updates"]["discriminator"] == t["batches_per_epoch"] > 0  # n_critic 1
    assert t["weight"] == p.gan.opponent_weight and t["probs"] == {"generator": [1.0], "discriminator": [1.0]}
    pop = json.loads(Path(f["pop1"]).read_text())
    refs = pop["all_strategies"]
    assert refs["d001"]["path"] == refs["g001"]["path"] == f["pair"]  # both join from one file
    assert (refs["d001"]["player"], refs["g001"]["player"]) == ("discriminator", "generator")


def test_the_frozen_oracle_trains_each_player_alone_against_the_other_mixture(jobs, tmp_path):
    from doracle.games.gan import jobs as gan

    p, f = jobs
    frozen = config.validate(gan_params(do={"iterations": 1, "tolerance": 0.01}, gan={"oracle": "frozen"}))
    assert game_of(frozen).responders(frozen) == {"discriminator": ("discriminator",), "generator": ("generator",)}
    assert game_of(p).responders(p) == {"pair": ("discriminator", "generator")}
    for player, opp in (("discriminator", "g000"), ("generator", "d000")):
        out = tmp_path / f"{player}.safetensors"
        gan.best_response(frozen, player, f["data"], f["pop0"], 1, str(out))
        meta = json.loads(out.with_suffix(".json").read_text())
        assert meta["role"] == player and meta["opponent"] == {"ids": [opp], "probs": [1.0]}
        assert meta["warm_start_from"] == ("d000" if player == "discriminator" else "g000")
        other = "generator" if player == "discriminator" else "discriminator"
        assert meta["training"]["updates"][player] > 0 and meta["training"]["updates"][other] == 0
        assert list(meta["nets"]) == [player]


def test_the_payoff_extends_by_the_new_row_and_column_with_standard_errors(jobs):
    from doracle.data import load
    from doracle.games.gan.jobs import load_net

    p, f = jobs
    pay = json.loads(Path(f["pay"]).read_text())
    assert pay["row_ids"] == ["d000", "d001"] and pay["col_ids"] == ["g000", "g001"]
    assert pay["cells_evaluated"] == 3  # the known cell is reused
    a, se = np.array(pay["payoff"]), np.array(pay["stderr"])
    assert a[0, 0] == json.loads(Path(f["pop0"]).read_text())["state"]["payoff"][0][0]
    ds = load(f["data"], "cpu")
    cell = payoff_cell(load_net(f["pair"], "generator", "cpu"), load_net(f["pair"], "discriminator", "cpu"),
                       ds.x["payoff"], fixed_latents(pipeline_seed(p), 200, 100))
    assert a[1, 1] == cell.value and se[1, 1] == cell.stderr
    assert (se > 0).all() and (se < 0.2).all()


def test_the_closing_discriminator_answers_the_final_sigma_g_and_closes_the_population(jobs):
    """One more row (the closing discriminator against the final sigma_G), its gain the exploitability,
    the final sigma the LP solution of the grown matrix; the metrics and headline carry it."""
    from doracle.data import load
    from doracle.engine import solve
    from doracle.games.gan.jobs import load_net
    from doracle.games.population import read_population

    p, f = jobs
    before, _ = read_population(f["pop1"])
    closed, doc = read_population(f["closed"])
    c = closed.closing
    assert c["id"] == "d002" and c["player"] == "row" and c["deployed"] == "generator"
    assert closed.row_ids == [*before.row_ids, "d002"] and closed.col_ids == before.col_ids
    np.testing.assert_array_equal(closed.payoff[:-1], before.payoff)
    ds = load(f["data"], "cpu")
    z = fixed_latents(pipeline_seed(p), 200, 100)
    d = load_net(f["closing"], "discriminator", "cpu")
    from doracle.games.gan.jobs import _load_strategy

    row = [payoff_cell(_load_strategy(doc, g, "cpu"), d, ds.x["payoff"], z).value for g in closed.col_ids]
    np.testing.assert_array_equal(closed.payoff[-1], row)
    assert c["exploitability"] == pytest.approx(float(np.dot(row, before.sigma_col)) - before.value, abs=1e-12)
    assert c["exploitability_stderr"] > 0 and c["value_before"] == before.value
    lp = solve(closed.payoff)
    np.testing.assert_allclose(closed.sigma_col, lp.col, atol=1e-12)
    assert closed.value == pytest.approx(lp.value)
    meta = json.loads(Path(f["closing"]).with_suffix(".json").read_text())
    assert meta["closing"] == "d002" and meta["opponent"]["ids"] == [i for i, q in zip(
        before.col_ids, before.sigma_col, strict=True) if q > 1e-9]
    assert meta["training"]["updates"]["discriminator"] > 0 and meta["training"]["updates"]["generator"] == 0
    assert doc["strategies"]["d002"]["closing"] is True


def test_a_converged_population_passes_best_responses_through(jobs, tmp_path):
    from doracle.games.gan import jobs as gan

    p, f = jobs
    pop = json.loads(Path(f["pop1"]).read_text())
    pop["state"]["converged"] = True
    state = tmp_path / "pop.json"
    write_json(state, pop)  # re-sealed: an edit by a test, not by hand
    assert gan.best_response(p, "generator", f["data"], str(state), 2, str(tmp_path / "g.safetensors")) == {
        "skipped": True}
    assert json.loads((tmp_path / "g.json").read_text())["skipped"] is True


def test_evaluation_and_metrics_key_every_generator(jobs, tmp_path):
    from doracle.games.gan import jobs as gan
    from doracle.games.population import double_oracle_summary, read_population

    p, f = jobs
    evs = [str(tmp_path / n) for n in ("mix.json", "members.json", "base.json")]
    gan.evaluate(p, f["data"], "do_mixture", evs[0], population=f["closed"], checkpoint=None, reference=f["ref"])
    gan.evaluate(p, f["data"], "do_members", evs[1], population=f["closed"], checkpoint=None, reference=f["ref"])
    gan.evaluate(p, f["data"], "base_gan", evs[2], population=None, checkpoint=f["base"], reference=f["ref"])
    from doracle.games.gan.game import GAN, merge_metrics

    m = merge_metrics(p, f["closed"], evs, str(tmp_path / "metrics.json"))
    assert set(m["models"]) == {"do_mixture", "g000", "g001", "base_gan"}
    for r in m["models"].values():
        assert r["fid"] > 0 and 1.0 <= r["inception_score"] <= 10.0 and 0 <= r["classes_covered"] <= 10
        assert r["n_fake"] == 120 and {"precision", "recall", "density", "coverage"} <= set(r)
    state, doc = read_population(f["closed"])
    assert set(m["double_oracle"]) == set(double_oracle_summary(state, 0.01, doc["payoff_stderr"], p.seed))
    assert set(m["double_oracle"]["sigma_stability"]["row"]) == set(state.row_ids)
    assert m["double_oracle"]["exploitability"] == state.closing["exploitability"]
    head = GAN.headline_metrics(m)
    assert (head["do_exploitability"], head["do_exploitability_stderr"]) == (
        state.closing["exploitability"], state.closing["exploitability_stderr"])
    assert m["double_oracle"]["support_size_col"] == len(m["models"]["do_mixture"]["members"])
    mix = m["models"]["do_mixture"]
    sigma = dict(zip(state.col_ids, state.sigma_col, strict=True))
    assert mix["members"] == [i for i in state.col_ids if sigma[i] > 1e-9]
    assert abs(sum(mix["drawn_shares"]) - 1) < 1e-9 and len(mix["drawn_shares"]) == len(mix["members"])
    # the FID floor (real against real) is below every generator's
    assert 0 <= m["fid_real_vs_real"] < min(r["fid"] for r in m["models"].values())
    # the budget in player-epochs: warm-up 2 x 2, one pair of 1 epoch (2), the closing discriminator's 1;
    # base GAN 4 epochs (8 >= 7)
    assert m["budget"] == {"do_player_epochs": 2 * 2 + 1 * 2 + 1, "base_gan_epochs": 4, "base_gan_player_epochs": 8}
    base = json.loads(Path(f["base"]).with_suffix(".json").read_text())
    assert base["training"]["epochs"] == 4
    # compute: the DO models count init, the pair, payoff, solve, prune, close; base_gan its own job
    c = {k: v["compute"] for k, v in m["models"].items()}
    assert c["do_mixture"]["jobs"] == 6 and c["base_gan"]["jobs"] == 1
    # a single generator: the jobs that led to its file (g000: the warm-up; g001: init + its best response)
    assert c["g000"]["jobs"] == 1 and c["g001"]["jobs"] == 2
    assert c["base_gan"]["passes"] == base["compute"]["forward_passes"] + base["compute"]["backward_passes"]


def test_the_passes_matched_base_gan_counts_as_many_passes_as_the_do_run(jobs, tmp_path):
    """base_gan_passes trains the whole number of epochs whose counted passes come nearest the DO
    run's (every job upstream of the closed population), and the formula is what the loop counts."""
    from doracle.data import load
    from doracle.games import graph
    from doracle.games.gan import jobs as gan

    p, f = jobs
    meta = gan.train_base_gan(p, f["data"], str(tmp_path / "bgp.safetensors"), population=f["closed"])
    b, c = meta["budget"], meta["compute"]
    n_train = len(load(f["data"], "cpu").y["train"])
    assert meta["method"] == "base_gan_passes" and b["do_passes"] == graph.model_cost(p, f["closed"])["passes"]
    assert b["passes_per_epoch"] == gan.epoch_passes(n_train, p.gan.batch_size, p.gan.n_critic)
    passes = c["forward_passes"] + c["backward_passes"]
    assert passes == b["base_gan_passes_epochs"] * b["passes_per_epoch"] == meta["training"]["epochs"] * b[
        "passes_per_epoch"]
    assert abs(passes - b["do_passes"]) <= b["passes_per_epoch"] / 2  # within half an epoch of the DO run's
    assert meta["inputs"][f["closed"]]  # the population it matched is an input


def test_the_evaluations_draw_the_reports_grids_and_the_report_refuses_a_changed_one(jobs, tmp_path):
    """Each GAN evaluation holds its models' sample grids (8-bit, the same seed for every model)
    and the real images'; the torch-free report plots them, and refuses an evaluation file that
    changed after the metrics job read it."""
    from doracle.errors import ArtifactError
    from doracle.games.gan import game as gan_game
    from doracle.games.gan import jobs as gan
    from doracle.games.gan.arithmetic import sample_mixture
    from doracle.report.gan import decode_grid

    p, f = jobs
    evs = [str(tmp_path / "mix.json"), str(tmp_path / "base.json")]
    gan.evaluate(p, f["data"], "do_mixture", evs[0], population=f["closed"], checkpoint=None, reference=f["ref"])
    gan.evaluate(p, f["data"], "base_gan", evs[1], population=None, checkpoint=f["base"], reference=f["ref"])
    e = json.loads(Path(evs[1]).read_text())
    grid = decode_grid(e["models"]["base_gan"]["grid"])
    assert grid.shape == (p.gan.metrics.grid, 1, 8, 8) and decode_grid(e["real_grid"]).shape == grid.shape
    from doracle import runtime

    want = sample_mixture([gan.load_net(f["base"], "generator", "cpu")], [1.0], p.gan.metrics.grid,
                          runtime.derive_seed(p.seed, "report", "grid"))[0].numpy()
    assert np.abs(grid - want).max() <= 0.5 / 255 + 1e-6  # the same images, rounded to 8 bits
    metrics, report = str(tmp_path / "metrics.json"), tmp_path / "report"
    m = gan_game.merge_metrics(p, f["closed"], evs, metrics)
    assert all("grid" not in r for r in m["models"].values())  # metrics.json stays small
    gan_game.GAN.report(p, metrics, f["closed"], f["pay"], str(report))
    assert {x.name for x in report.glob("samples_*.png")} == {"samples_do_mixture.png",
                                                                       "samples_base_gan.png", "samples_real.png"}
    doc = json.loads(Path(evs[1]).read_text())
    doc["models"]["base_gan"]["fid"] += 1.0
    write_json(evs[1], doc)  # re-sealed: changed after the metrics job read it
    with pytest.raises(ArtifactError, match="changed since the metrics job read it"):
        gan_game.GAN.report(p, metrics, f["closed"], f["pay"], str(tmp_path / "report2"))


def test_the_mixture_evaluation_needs_the_reference_classifier(cli, jobs_dir, tmp_path):
    p, f, d = jobs_dir
    f = {k: str(d / v) for k, v in f.items()}
    pf = tmp_path / "p.yaml"
    pf.write_text(yaml.safe_dump(gan_params()))
    out = tmp_path / "e.json"
    proc = cli("evaluate", "--params", pf, "--data", f["data"], "--model", "do_mixture", "--population", f["pop1"],
               "--out", out)
    assert proc.returncode == 2 and "--uses reference=PATH" in proc.stderr and not out.exists()
    proc = cli("evaluate", "--params", pf, "--data", f["data"], "--model", "do_best_member", "--population",
               f["pop1"], "--uses", f"reference={f['ref']}", "--out", out)
    assert proc.returncode == 2 and "valid targets are do_mixture, do_members" in proc.stderr and not out.exists()


# ----------------------------------------------------------------------------- the real pipeline


@pytest.fixture(scope="module")
def gan_project(shared):
    """The shared run (conftest.py: read-only) and what its `snakemake -c2` printed."""
    return shared.path, SimpleNamespace(stdout=shared.output, stderr="")


@pytest.mark.slow
def test_snakemake_runs_the_gan_experiment_and_reports_it(gan_project):
    proj, proc = gan_project
    assert "tinygan: report at results/tinygan/report/summary.md" in proc.stdout + proc.stderr
    res = proj / "results/tinygan"
    m = json.loads((res / "metrics.json").read_text())
    assert m["game"] == "gan" and {"base_gan", "do_mixture", "g000"} <= set(m["models"])
    pop = json.loads((res / "do/closing/population.json").read_text())  # the closed population: one more row
    assert set(m["models"]) == {"base_gan", "base_gan_passes", "do_mixture", *pop["state"]["col_ids"]}
    assert pop["state"]["row_ids"][-1] == pop["state"]["closing"]["id"] == "d003"
    assert m["double_oracle"]["exploitability"] == pop["state"]["closing"]["exploitability"]
    for r in m["models"].values():
        assert {"fid", "inception_score", "classes_covered", "compute"} <= set(r)
    c = {k: v["compute"] for k, v in m["models"].items()}
    # init, 2 iterations of 4 jobs (the co-trained pair is one), close
    assert c["base_gan"]["jobs"] == 1 and c["do_mixture"]["jobs"] == 1 + 2 * 4 + 1
    # the passes-matched base GAN: its own job after the whole DO run, within half an epoch of its passes
    # its compute is its own job's: the DO run it copies its count from is not (pipeline.COUNT_ONLY_INPUTS)
    assert c["base_gan_passes"]["jobs"] == 1
    bp = m["budget"]["base_gan_passes"]
    assert bp["do_passes"] == c["do_mixture"]["passes"]
    assert abs(bp["epochs"] * bp["passes_per_epoch"] - bp["do_passes"]) <= bp["passes_per_epoch"] / 2
    assert f"base_gan_passes trains {bp['epochs']} epochs" in (res / "report/summary.md").read_text()
    # sigma's stability under the payoff cells' noise (game-generic), in metrics.json and the report
    st = m["double_oracle"]["sigma_stability"]
    assert set(st["col"]) == set(pop["state"]["col_ids"]) and st["resamples"] == 200
    assert "### Meta-strategy stability" in (res / "report/summary.md").read_text()
    assert m["double_oracle"]["iterations_run"] == 2
    rep = res / "report"
    text = (rep / "summary.md").read_text()
    assert "| do_mixture |" in text and "| base_gan |" in text and "## Samples" in text
    grids = {p.name for p in rep.glob("samples_*.png")}
    assert {"samples_do_mixture.png", "samples_base_gan.png", "samples_real.png",
            *(f"samples_{g}.png" for g in pop["state"]["col_ids"])} <= grids
    for png in (*grids, "payoff_heatmap.png", "meta_strategy.png", "do_gap.png", "scores.png"):
        assert (rep / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f"]({png})" in text, png
    # the paired FID comparisons against the base GAN, each with its 95% interval, and the verdict
    comps = m["comparisons"]
    assert set(comps) == {f"{n} - base_gan" for n in m["models"] if n != "base_gan"} | {
        "do_mixture - base_gan_passes"}
    for c in comps.values():
        lo, hi = c["interval"]
        assert lo <= c["difference"] <= hi and c["resamples"] == 50
        assert c["verdict"] == ("lower" if hi < 0 else "higher" if lo > 0 else "not distinguishable")
    for name, r in m["models"].items():
        assert r["fid_interval"][0] <= r["fid"] <= r["fid_interval"][1] and "fid_bootstrap" not in r, name
        assert r["n_fake"] == r["n_real"] == 120 and r["is_split_size"] == 40 and r["is_splits"] == 3
    mix = comps["do_mixture - base_gan"]
    word = {"lower": "lower (better) than", "higher": "higher (worse) than",
            "not distinguishable": "not distinguishable from"}[mix["verdict"]]
    assert f"the DO mixture's FID is {word} the base GAN's ({mix['difference']:+.3f}" in text
    assert "| do_mixture - base_gan |" in text
    # index.html: self-contained (every image a data URI of a PNG drawn here), a row per model
    html = (rep / "index.html").read_text()
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert len(srcs) >= len(grids) + 4 and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert {base64.b64decode(s.split(",", 1)[1]) for s in srcs} >= {(rep / g).read_bytes() for g in grids}
    table = html[html.index('<table id=\'methods\'>'):]
    table = table[:table.index("</table>")]
    assert re.findall(r"<tr[^>]*><td>([^<]+)</td>", table) == list(m["models"])
    assert "FID" in table and not re.search(r'(src|href)="(https?:)?//', html)
    comp = html[html.index("<table id='comparisons'>"):]
    assert re.findall(r"<tr[^>]*><td>([^<]+)</td>", comp[:comp.index("</table>")]) == list(comps)


@pytest.mark.slow
def test_dvc_repro_of_the_gan_experiment_gives_the_same_bytes(gan_project, shared_dvc):
    proj, _ = gan_project
    other = shared_dvc.gan
    for rel in ("do/it000/init.safetensors", "do/it002/payoff.json", "do/it002/population.json",
                "do/closing/response.safetensors", "do/closing/population.json",
                "baselines/base_gan/model.safetensors", "reference/model.safetensors"):
        assert body(other / "results/tinygan" / rel) == body(proj / "results/tinygan" / rel), rel
    a = json.loads((proj / "results/tinygan/metrics.json").read_text())
    b = json.loads((other / "results/tinygan/metrics.json").read_text())
    for name in a["models"]:
        assert a["models"][name]["fid"] == b["models"][name]["fid"], name
