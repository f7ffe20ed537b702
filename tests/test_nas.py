"""DONAS: architecture search inside the best-response oracles (nas.*), for both games.

Real trainings on the tiny configurations (digits, 240 training images): the search's budget
(trainings counted by wrapping the real training functions), its selection, the records it
leaves, mixed-architecture populations through payoff, evaluation, metrics and report, the
params' errors, and bit-identical reruns on the CPU."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from doracle import config, pipeline
from doracle.artifacts import read_json
from doracle.errors import ConfigError
from doracle.games import nas
from project import gan_params, params_with
from test_gan_game import run_first_iteration

CLASSIFIERS = {"doracle_cnn_small": {"width": [4, 8], "hidden": [16, 32], "activation": ["relu", "gelu"]},
               "doracle_mlp": {"hidden": [16, 32], "depth": [1, 2], "activation": ["relu", "silu"]}}
AT_NAS = {"enabled": True, "candidates": 3, "short_epochs": 1, "space": {"defender": CLASSIFIERS}}
GAN_NAS = {"enabled": True, "candidates": 2, "short_epochs": 1, "space": {
    "generator": {"doracle_gen_mlp": {"width": [8, 16], "depth": [1, 2]}},
    "discriminator": {"doracle_disc_mlp": {"width": [8, 16], "activation": ["leaky_relu", "silu"]}}}}


def sha(p) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def at_raw(over: dict | None = None, **nas_over) -> dict:
    """The tiny AT params with ``nas`` replaced whole (params.yaml's own space is not merged in)."""
    return {**params_with(over), "nas": {**AT_NAS, **nas_over}}


def at_params(over: dict | None = None, **nas_over):
    return config.validate(at_raw(over, **nas_over))


# ----------------------------------------------------------------------------- the search itself


def test_search_picks_the_best_score_ties_to_the_first_and_never_retrains_a_repeat():
    space = {"a": {"x": [1, 2, 3]}, "b": {}}
    calls = []

    def score(arch, options):  # a fabricated objective: b is best, a's x=3 ties with it
        calls.append((arch, options))
        return (1.0 if arch == "b" or options.get("x") == 3 else options["x"] / 10), {"epochs": 1}

    r = nas.search(space, candidates=10, seed=0, direction="maximize", train_and_score=score)
    assert len(calls) == len(r["candidates"]) == nas.space_size(space) == 4  # capped by the space, no repeats
    assert len({json.dumps(c) for c in calls}) == 4
    best = [k for k, c in enumerate(r["candidates"]) if c["score"] == 1.0]
    assert r["chosen"] == best[0]  # ties: the earlier candidate
    low = nas.search(space, candidates=10, seed=0, direction="minimize", train_and_score=score)
    assert low["candidates"][low["chosen"]]["score"] == 0.1
    again = nas.search(space, candidates=3, seed=5, direction="maximize", train_and_score=score)
    assert len(again["candidates"]) == 3 and again == nas.search(space, candidates=3, seed=5, direction="maximize",
                                                                 train_and_score=score)


# ----------------------------------------------------------------------------- AT: defender best responses


@pytest.fixture(scope="module")
def at_dir(tmp_path_factory):
    """Data, base classifier and iteration 0 of the tiny AT configuration (in process)."""
    from doracle import data
    from doracle.games.at import jobs as adversarial

    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("nas_at")
    p = at_params()
    f = {k: str(d / v) for k, v in {"data": "data.safetensors", "base": "base.safetensors",
                                   "a000": "a000.safetensors", "pop0": "pop0.json"}.items()}
    data.prepare(p, f["data"])
    adversarial.train_classifier(p, f["data"], f["base"], role="base", method="erm")
    adversarial.init(p, f["data"], f["base"], f["a000"], f["pop0"])
    return f


def test_the_defender_search_trains_k_short_candidates_and_one_full_model(at_dir, tmp_path, monkeypatch):
    from doracle.defenses import training
    from doracle.games import classifiers
    from doracle.games.at import jobs as adversarial

    epochs, real = [], training.train

    def counting(*args, **kwargs):  # counts the real trainings, runs them unchanged
        epochs.append(kwargs["epochs"])
        return real(*args, **kwargs)

    for module in (classifiers, adversarial):  # where the training loop is called
        monkeypatch.setattr(module, "train", counting)
    p = at_params(candidates=3, short_epochs=1)
    meta = adversarial.best_response_defender(p, at_dir["data"], at_dir["pop0"], 1, str(tmp_path / "d.safetensors"))
    rec = meta["nas"]
    assert epochs == [1, 1, 1, p.training.epochs] and rec["trainings"] == 4 == len(epochs)
    assert [c["epochs"] for c in rec["candidates"]] == [1, 1, 1] and rec["full_epochs"] == p.training.epochs
    assert len({json.dumps([c["arch"], c["options"]]) for c in rec["candidates"]}) == 3
    scores = [c["score"] for c in rec["candidates"]]
    assert scores[rec["chosen"]] == max(scores) and rec["chosen"] == scores.index(max(scores))
    chosen = rec["candidates"][rec["chosen"]]
    assert (meta["arch"], meta.get("arch_options", {})) == (chosen["arch"], chosen["options"])
    # the job's compute includes the candidates' (their training and their payoff cells)
    assert meta["compute"]["forward_passes"] == (meta["training"]["compute"]["forward_passes"]
                                                 + sum(c["compute"]["forward_passes"] for c in rec["candidates"]))
    assert "nas" in meta["params"]  # the searching stage records (and tracks) the section


@pytest.mark.parametrize("favoured", ["doracle_mlp", "doracle_cnn_small"])
def test_the_candidate_with_the_best_payoff_is_chosen_and_trained(at_dir, tmp_path, monkeypatch, favoured):
    """The scores are the payoff cells: fabricate cells that favour one family and the search
    picks it (the real accuracy is still computed, then replaced)."""
    from doracle.games import classifiers
    from doracle.games.at import jobs as adversarial

    real = adversarial._cell

    def cell(model, x, y):
        acc, se, cost = real(model, x, y)
        is_mlp = type(model.inner).__name__ == "MLP"
        return (0.9 if is_mlp == (favoured == "doracle_mlp") else 0.1), se, cost

    monkeypatch.setattr(adversarial, "_cell", cell)
    out = tmp_path / "d.safetensors"
    p = at_params(candidates=4)
    meta = adversarial.best_response_defender(p, at_dir["data"], at_dir["pop0"], 1, str(out))
    rec = meta["nas"]
    families = [c["arch"] for c in rec["candidates"]]
    assert favoured in families and meta["arch"] == favoured
    assert rec["chosen"] == families.index(favoured)  # the first of the tied favourites
    model, loaded = classifiers.load(out)
    assert loaded["arch"] == favoured and (type(model.inner).__name__ == "MLP") == (favoured == "doracle_mlp")


def test_warm_start_applies_only_when_the_search_chose_the_members_architecture(at_dir, tmp_path):
    from doracle.games.at import jobs as adversarial

    warm = {"do": {"defender": {"warm_start": True}}}
    same = at_params(warm, space={"defender": {"doracle_cnn_small": {}}})
    meta = adversarial.best_response_defender(same, at_dir["data"], at_dir["pop0"], 1, str(tmp_path / "a.safetensors"))
    assert meta["warm_start_from"] == "d000" and meta["nas"]["trainings"] == 2  # a one-architecture space
    other = at_params(warm, space={"defender": {"doracle_mlp": {}}})
    meta = adversarial.best_response_defender(other, at_dir["data"], at_dir["pop0"], 1, str(tmp_path / "b.safetensors"))
    assert "warm_start_from" not in meta and meta["nas"]["warm_start_skipped"].startswith("d000 is a doracle_cnn_small")


def test_a_nas_best_response_is_bit_identical_when_rerun(at_dir, tmp_path):
    from doracle.games.at import jobs as adversarial

    p = at_params(candidates=2)
    for k in (1, 2):
        adversarial.best_response_defender(p, at_dir["data"], at_dir["pop0"], 1, str(tmp_path / f"d{k}.safetensors"))
    assert sha(tmp_path / "d1.safetensors") == sha(tmp_path / "d2.safetensors")
    a, b = (read_json(tmp_path / f"d{k}.json")["nas"] for k in (1, 2))
    assert [c["score"] for c in a["candidates"]] == [c["score"] for c in b["candidates"]]


def test_a_mixed_architecture_at_population_plays_evaluates_and_reports(at_dir, tmp_path, monkeypatch):
    """d000 is the base CNN, d001 an MLP chosen by the search: they round-trip through their
    sidecars (options included), the payoff, solve, prune, the evaluation suite on their mixture,
    the metrics and the report's architecture-search section."""
    from doracle.games import classifiers, population
    from doracle.games.at import game as at_game
    from doracle.games.at import jobs as adversarial
    from doracle.games.at.evaluate import evaluate
    from doracle.games.at.metrics import merge_metrics
    from doracle.report.at import write_report

    monkeypatch.chdir(tmp_path)
    p = at_params(candidates=2, space={"defender": {"doracle_mlp": {"hidden": [16, 24], "activation": ["gelu"]}}})
    f = {"d": "d001.safetensors", "a": "a001.safetensors", "pay": "payoff.json", "meta": "meta.json",
         "pop": "pop1.json"}
    adversarial.best_response_defender(p, at_dir["data"], at_dir["pop0"], 1, f["d"])
    adversarial.best_response_attacker(p, at_dir["data"], at_dir["pop0"], 1, f["a"])
    adversarial.payoff(p, at_dir["data"], at_dir["pop0"], 1, f["d"], f["a"], f["pay"])
    population.solve_meta(p, at_dir["pop0"], f["pay"], f["meta"])
    population.prune(p, at_dir["pop0"], f["pay"], f["meta"], f["pop"])
    model, meta = classifiers.load(f["d"])
    assert meta["arch"] == "doracle_mlp" and meta["arch_options"]["activation"] == "gelu"
    assert isinstance(model.inner.net[2], torch.nn.GELU) and model.inner.net[1].out_features in (16, 24)
    assert "arch_options" not in read_json(Path(at_dir["base"]).with_suffix(".json"))  # defaults: as before
    pay = read_json(f["pay"])
    assert pay["row_ids"] == ["d000", "d001"] and len(pay["payoff"]) == 2
    evals = []
    for target in at_game.AT.TARGETS:  # do_uniform: both architectures in one mixture
        evals.append(f"{target}.json")
        r = evaluate(p, at_dir["data"], target, evals[-1], population=f["pop"], log=lambda *a: None)
        assert 0.0 <= r["clean_accuracy"] <= 1.0
    assert r["members"] == ["d000", "d001"]
    merge_metrics(p, f["pop"], evals, "metrics.json")
    summary = write_report(p, "metrics.json", f["pop"], f["pay"], "report").read_text()
    assert "## Architecture search" in summary and "| d001 | defender | doracle_mlp (hidden=" in summary
    assert "| d000 | defender | doracle_cnn_small |" in summary


# ----------------------------------------------------------------------------- GAN: both players search


@pytest.fixture(scope="module")
def gan_dir(tmp_path_factory):
    """The tiny GAN configuration (DCGAN warm-up) with both players searching MLP families: data,
    reference classifier, init and one iteration, in process at the pipeline's paths."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("nas_gan")
    cwd = os.getcwd()
    os.chdir(d)
    try:
        raw = gan_params(do={"iterations": 1, "tolerance": 0.01})
        raw["gan"]["pair_epochs"] = 2  # the full budget differs from the candidates' short one
        p = config.validate({**raw, "nas": GAN_NAS})
        f = run_first_iteration(p)
        yield p, f, d
    finally:
        os.chdir(cwd)


def test_gan_players_search_with_their_own_direction_and_budget(gan_dir, monkeypatch, tmp_path):
    from doracle.games.gan import jobs as gan

    p, f, d = gan_dir
    monkeypatch.chdir(d)
    meta = read_json(Path(f["pair"]).with_suffix(".json"))  # the co-trained pair: both players searched
    for player, direction in (("discriminator", "maximize"), ("generator", "minimize")):
        rec = meta["nas"][player]
        assert rec["direction"] == direction and rec["trainings"] == 3 and len(rec["candidates"]) == 2
        assert all(c["epochs"] == 1 for c in rec["candidates"])
        scores = [c["score"] for c in rec["candidates"]]
        best = max(scores) if direction == "maximize" else min(scores)
        assert rec["chosen"] == scores.index(best)
        chosen = rec["candidates"][rec["chosen"]]
        assert meta["nets"][player]["arch"] == chosen["arch"] and meta["nets"][player]["options"] == chosen["options"]
        assert "warm_start_skipped" in rec  # d000/g000 are DCGANs
    assert "warm_start_from" not in meta
    calls = {"candidates": [], "pair": []}
    real_g, real_pair = gan.train_generator, gan.train_pair

    def counting(*args, **kwargs):
        calls["candidates"].append(kwargs["steps"])
        return real_g(*args, **kwargs)

    def counting_pair(*args, **kwargs):
        calls["pair"].append(kwargs["epochs"])
        return real_pair(*args, **kwargs)

    monkeypatch.setattr(gan, "train_generator", counting)
    monkeypatch.setattr(gan, "train_pair", counting_pair)
    for k in (1, 2):  # budget counted on the real training functions, and a bit-identical rerun
        gan.best_response(p, "pair", f["data"], f["pop0"], 1, str(tmp_path / f"g{k}.safetensors"))
    from doracle.data import load

    steps = gan._steps_per_epoch(p, len(load(f["data"], "cpu").y["train"]))
    assert calls == {"candidates": [steps, steps] * 2, "pair": [p.gan.pair_epochs] * 2}  # K short + 1 full, twice
    assert sha(tmp_path / "g1.safetensors") == sha(tmp_path / "g2.safetensors") == sha(f["pair"])


def test_a_mixed_architecture_gan_population_evaluates_and_reports(gan_dir, monkeypatch):
    from doracle.games.gan import game as gan_game
    from doracle.games.gan import jobs as gan

    p, f, d = gan_dir
    monkeypatch.chdir(d)
    g0, g1 = gan.load_net(f["init"], "generator", "cpu"), gan.load_net(f["pair"], "generator", "cpu")
    assert type(g0).__name__ == "DCGANGenerator" and type(g1).__name__ == "MLPGenerator"
    options = read_json(Path(f["pair"]).with_suffix(".json"))["nets"]["generator"]["options"]
    linears = [m for m in g1.net if isinstance(m, torch.nn.Linear)]
    assert len(linears) == options["depth"] + 1 and linears[0].out_features == options["width"]
    assert "options" not in read_json(Path(f["init"]).with_suffix(".json"))["nets"]["generator"]
    pay = read_json(f["pay"])
    assert pay["col_ids"] == ["g000", "g001"] and pay["row_ids"] == ["d000", "d001"]
    evals = []
    for target in gan_game.GAN.TARGETS:
        evals.append(f"{target}.json")
        r = gan.evaluate(p, f["data"], target, evals[-1], population=f["closed"], checkpoint=None, reference=f["ref"])
    assert set(r["models"]) == set(read_json(f["closed"])["state"]["col_ids"])
    gan_game.merge_metrics(p, f["closed"], evals, "metrics.json")
    summary = gan_game.GAN.report(p, "metrics.json", f["closed"], f["pay"], "report").read_text()
    assert "## Architecture search" in summary and "| generator | g001 |" in summary
    assert "| g000 | generator | doracle_gen_dcgan |" in summary


# ----------------------------------------------------------------------------- params


@pytest.mark.parametrize("nas_over, msg", [
    ({"space": {"defender": {"doracle_cnn_smal": {}}}},
     "nas.space.defender.doracle_cnn_smal: unknown defender family; did you mean 'doracle_cnn_small'?"),
    ({"space": {"defender": {"doracle_mlp": {"width": [8]}}}},
     "nas.space.defender.doracle_mlp.width: doracle_mlp takes no option 'width'"),
    ({"space": {"defender": {"doracle_mlp": {"hidden": []}}}}, "nas.space.defender.doracle_mlp.hidden: no choices"),
    ({"space": {"defender": {"doracle_mlp": {"activation": ["swish"]}}}},
     "nas.space.defender.doracle_mlp.activation: unknown activation"),
    ({"space": {"generator": {"doracle_gen_mlp": {}}}}, "nas.space.generator: the at game has no player 'generator'"),
    ({"players": ["attacker"]}, "nas.players[0]: the at game has no player 'attacker'"),
    ({"space": {}}, "nas.space: nas.enabled is true but no player has a search space"),
])
def test_bad_nas_params_are_refused_naming_the_key(nas_over, msg):
    with pytest.raises(ConfigError) as err:
        config.validate(at_raw(**nas_over))
    assert msg in str(err.value)


def test_gan_batch_norm_choices_must_be_booleans():
    """YAML's "no" stays a (truthy) string in a list of choices: refused, not BatchNorm kept on."""
    space = {"discriminator": {"doracle_disc_dcgan": {"batch_norm": ["no", True]}}}
    with pytest.raises(ConfigError, match="doracle_disc_dcgan.batch_norm: choices must be true or false"):
        config.validate({**gan_params(), "nas": {**GAN_NAS, "space": space}})


def test_the_best_responses_that_can_search_track_the_nas_section_searching_or_not():
    """On or off, so that `dvc exp run -S nas.enabled=true` reruns them and dvc.yaml stays as it is."""
    off, on = config.validate(params_with({})), at_params()
    for p in (off, on):
        assert "nas" in pipeline.stage_keys(p, "best_response_defender")
        assert "nas" not in pipeline.stage_keys(p, "best_response_attacker")
        assert all("nas" not in pipeline.stage_keys(p, s) for s in ("init", "payoff", "evaluate", "train"))
    g = config.validate({**gan_params(), "nas": {**GAN_NAS, "players": ["generator"]}})
    assert "nas" in pipeline.stage_keys(g, "best_response_generator")
    assert "nas" in pipeline.stage_keys(g, "best_response_discriminator")


def test_default_architectures_are_unchanged_by_the_new_options():
    """The default options build the same modules, state_dict keys and weights as before (the
    architecture names the activation; no option changes a default network)."""
    from doracle import models

    for arch in ("doracle_cnn_small", "doracle_mlp"):
        torch.manual_seed(0)
        a = models.create(arch, num_classes=10, in_chans=1, img_size=8, mean=(0.5,), std=(0.5,))
        torch.manual_seed(0)
        b = models.create(arch, num_classes=10, in_chans=1, img_size=8, mean=(0.5,), std=(0.5,), activation="relu")
        assert repr(a) == repr(b) and all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
        assert not any(isinstance(m, torch.nn.GELU | torch.nn.SiLU | torch.nn.Tanh) for m in a.modules())
    cnn = models.create("doracle_cnn_small", num_classes=10, in_chans=1, img_size=8, mean=(0.5,), std=(0.5,))
    assert [k for k in cnn.state_dict() if "weight" in k] == ["inner.features.0.weight", "inner.features.2.weight",
                                                             "inner.head.1.weight", "inner.head.3.weight"]
    deep = models.create("doracle_cnn_small", num_classes=10, in_chans=1, img_size=8, mean=(0.5,), std=(0.5,),
                         depth=3, width=4, activation="silu")
    assert deep(torch.rand(2, 1, 8, 8)).shape == (2, 10) and sum(isinstance(m, torch.nn.SiLU) for m in deep.modules()) == 4
    from doracle.models.small import ACTIVATIONS

    assert tuple(ACTIVATIONS) == models.ACTIVATION_NAMES


@pytest.mark.slow
def test_snakemake_runs_a_searching_at_experiment_and_reports_the_search(tmp_path):
    """The real workflow (Snakemake, 2 cores, about 2 minutes) on the tiny AT configuration with
    the defender searching MLPs for one DO iteration: the report shows the search."""
    from project import make_project, run

    raw = at_raw({"do": {"iterations": 1}, "baselines": {"methods": ["erm"]}}, candidates=2,
                 space={"defender": {"doracle_mlp": {"hidden": [16, 32], "activation": ["relu", "gelu"]}}})
    proj = make_project(tmp_path / "proj", raw, dvc=False)
    run(["snakemake", "-c2"], proj)
    res = proj / "results/tiny"
    meta = read_json(res / "do/it001/defender.json")
    assert meta["arch"] == "doracle_mlp" and meta["nas"]["trainings"] == 3 and "nas" in meta["params"]
    summary = (res / "report/summary.md").read_text()
    assert "## Architecture search" in summary and summary.count("| 1 | defender | d001 |") == 2
    assert "| d001 | defender | doracle_mlp (hidden=" in summary
