"""Attacker strategies cached or computed on the fly (do.attacker.materialize), and augmentation."""

from __future__ import annotations

import json

import pytest
import torch

from doracle import config, data
from doracle.artifacts import load_tensors, read_json
from doracle.attacks.noise import KeyedNoise
from doracle.data.augment import augment
from doracle.errors import ConfigError
from doracle.games import population
from doracle.games.at import attackers
from doracle.games.at import jobs as adversarial
from project import merge, params_with


def _run_do(tmp, overrides: dict, iterations: int = 2) -> dict:
    """Prepare, train the base model and run ``iterations`` DO iterations in process."""
    p = config.validate(params_with(overrides))
    d, base = str(tmp / "data.safetensors"), str(tmp / "base.safetensors")
    data.prepare(p, d)
    adversarial.train_classifier(p, d, base, role="base", method="erm")
    state = str(tmp / "pop000.json")
    adversarial.init(p, d, base, str(tmp / "a000.safetensors"), state)
    out = {}
    for it in range(1, iterations + 1):
        dfd, att = str(tmp / f"d{it:03d}.safetensors"), str(tmp / f"a{it:03d}.safetensors")
        adversarial.best_response_defender(p, d, state, it, dfd)
        adversarial.best_response_attacker(p, d, state, it, att)
        pay, meta, nxt = (str(tmp / f"{n}{it:03d}.json") for n in ("payoff", "meta", "pop"))
        adversarial.payoff(p, d, state, it, dfd, att, pay)
        population.solve_meta(p, state, pay, meta)
        population.prune(p, state, pay, meta, nxt)
        state = nxt
    out["payoff"] = read_json(tmp / f"payoff{iterations:03d}.json")
    out["state"], out["params"], out["data"] = state, p, d
    out["defenders"] = [load_tensors(tmp / f"d{it:03d}.safetensors")[0] for it in range(1, iterations + 1)]
    out["attackers"] = [load_tensors(tmp / f"a{it:03d}.safetensors") for it in range(iterations + 1)]
    return out


def test_on_the_fly_and_cached_attackers_give_the_same_payoffs(tmp_path):
    runs = {}
    for mode in ("cache", "on_the_fly"):
        (tmp_path / mode).mkdir()
        # uniform meta-strategy: by iteration 3 the defender recomputes an attacker bound to two defenders
        runs[mode] = _run_do(tmp_path / mode, {"do": {"meta_solver": "uniform", "iterations": 3,
                                                      "attacker": {"materialize": mode}}}, iterations=3)
    cache, fly = runs["cache"], runs["on_the_fly"]
    # the cache holds the training split; on the fly nothing but the payoff split is stored; the
    # last iteration's attacker, which no defender trains against, perturbs the payoff split only
    n_payoff = len(cache["attackers"][0][0]["x_payoff"])
    steps = cache["params"].do.attacker.attack.steps
    for it, ((t_c, m_c), (t_f, m_f)) in enumerate(zip(cache["attackers"], fly["attackers"], strict=True)):
        last = it == 3
        assert set(t_c) == ({"x_payoff"} if last else {"x_train", "x_payoff"}) and set(t_f) == {"x_payoff"}
        assert m_c["materialize"]["train"] == ("none" if last else "cache")
        assert m_f["materialize"]["train"] == ("none" if last else "on_the_fly")
        assert torch.equal(t_c["x_payoff"], t_f["x_payoff"])
        assert set(m_f["target"]["refs"]) == set(m_f["target"]["ids"])
        # pass counts: on the fly (and the last attacker) one backward per PGD step per payoff
        # example per member, nothing on the training split; a cache pays for the training split too
        members = len(m_f["target"]["ids"])
        assert m_f["compute"]["backward_passes"] == steps * n_payoff * members
        assert m_c["compute"]["backward_passes"] == steps * members * (n_payoff + (0 if last else len(t_c["x_train"])))
    # by iteration 3 an attacker recomputed on the fly is bound to a mixture of two defenders
    assert max(len(m["target"]["ids"]) for _, m in fly["attackers"]) >= 2
    # the defenders trained against recomputed perturbations are the same networks, bit for bit...
    for a, b in zip(cache["defenders"], fly["defenders"], strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    # ...and so is the whole payoff matrix, with more than one attacker in the mixture by now
    assert cache["payoff"]["payoff"] == fly["payoff"]["payoff"]
    assert len(cache["payoff"]["col_ids"]) == 4
    # the bound defender models' passes are the on-the-fly defender's compute
    d_c = load_tensors(tmp_path / "cache" / "d003.safetensors")[1]
    d_f = load_tensors(tmp_path / "on_the_fly" / "d003.safetensors")[1]
    assert d_f["compute"]["forward_passes"] > d_c["compute"]["forward_passes"]
    assert set(d_f["opponent"]["materialized"].values()) == {"on_the_fly"}


def test_the_closing_attacker_answers_the_final_sigma_d_on_the_payoff_split_only(tmp_path):
    """AT's closing step: one more column, an attacker crafted against the final defender mixture on
    the payoff split alone (no work on the training split, even when attackers are cached); its gain
    is the exploitability, and the final sigma is the LP solution of the grown matrix."""
    import numpy as np

    from doracle.engine import solve
    from doracle.games.at.game import AT

    run = _run_do(tmp_path, {"do": {"attacker": {"materialize": "cache"}}}, iterations=1)
    p, model, out = run["params"], str(tmp_path / "closing.safetensors"), str(tmp_path / "closed.json")
    line = AT.close(p, run["data"], run["state"], model, out)
    before, _ = population.read_population(run["state"])
    closed, doc = population.read_population(out)
    c = closed.closing
    assert line.startswith(f"closing {c['id']} (attacker): exploitability of the defender mixture")
    assert c["id"] == "a002" and c["player"] == "col" and c["deployed"] == "defender"
    assert closed.row_ids == before.row_ids and closed.col_ids == [*before.col_ids, "a002"]
    tensors, meta = load_tensors(model)
    assert set(tensors) == {"x_payoff"} and meta["materialize"]["train"] == "none"
    assert meta["target"]["ids"] == [i for i, q in zip(before.row_ids, before.sigma_row, strict=True) if q > 1e-9]
    # the attack ran on the payoff split only: one forward + backward per PGD step per example per member
    n_payoff = len(tensors["x_payoff"])
    assert meta["compute"]["backward_passes"] % n_payoff == 0
    assert meta["compute"]["backward_passes"] <= p.do.attacker.attack.steps * n_payoff * len(meta["target"]["ids"])
    col = closed.payoff[:, -1]
    assert c["exploitability"] == pytest.approx(before.value - float(before.sigma_row @ col), abs=1e-12)
    lp = solve(closed.payoff)
    np.testing.assert_allclose(closed.sigma_row, lp.row, atol=1e-12)
    assert closed.value == pytest.approx(lp.value)
    assert doc["strategies"]["a002"]["closing"] is True and doc["params"]["do"]["meta_solver"] == "lp"


def test_cached_perturbations_are_the_on_the_fly_ones_in_any_batch():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 3)).eval()
    x, y = torch.rand(50, 1, 4, 4), torch.randint(0, 3, (50,))
    from doracle.attacks import run_attack
    from doracle.models.mixture import Mixture

    spec = config.AttackSpec(name="pgd", steps=3, rel_step_size=0.3, restarts=2, random_start=True)
    keys = torch.arange(50)
    whole = run_attack(spec, Mixture([net]), x, y, eps=0.1, seed=7, keys=keys, batch_size=16)
    order = torch.randperm(50)[:20]
    part = run_attack(spec, Mixture([net]), x[order], y[order], eps=0.1, seed=7, keys=keys[order], batch_size=7)
    assert torch.equal(whole[order], part)
    other = run_attack(spec, Mixture([net]), x, y, eps=0.1, seed=8, keys=keys, batch_size=16)
    assert not torch.equal(whole, other)  # the seed matters


def test_keyed_noise_is_uniform_per_key_and_independent_of_the_batch():
    a = KeyedNoise(3, torch.arange(2000)).rand((2000, 8), "cpu")
    assert 0.0 <= a.min() and a.max() < 1.0
    assert abs(a.mean().item() - 0.5) < 0.01 and abs(a.var().item() - 1 / 12) < 0.005
    assert torch.equal(KeyedNoise(3, torch.tensor([5, 1999])).rand((2, 8), "cpu"), a[[5, 1999]])
    g = KeyedNoise(3, torch.arange(4000))
    first, second = g.rand((4000, 2), "cpu"), g.rand((4000, 2), "cpu")
    assert not torch.equal(first, second)  # successive draws (restarts) differ
    n = KeyedNoise(4, torch.arange(20000)).randn((20000, 4), "cpu")
    assert abs(n.mean().item()) < 0.02 and abs(n.std().item() - 1) < 0.02
    corr = torch.corrcoef(torch.stack([a[:, 0], a[:, 1]]))[0, 1]
    assert abs(corr.item()) < 0.06


def test_auto_caches_small_unaugmented_training_splits_only():
    p = config.validate({})
    assert attackers.materialize(p, 1078, (1, 8, 8))[0] == "cache"
    assert attackers.materialize(p, 45000, (3, 32, 32))[0] == "on_the_fly"  # 8 x 553 MB > 1024 MB
    aug = config.validate({"data": {"dataset": "cifar10"}, "training": {"augmentation": "standard"}})
    assert aug.augmentation == "crop_flip"
    mode, why = attackers.materialize(aug, 100, (3, 32, 32))
    assert mode == "on_the_fly" and "augmented" in why
    assert config.validate({"data": {"dataset": "svhn"}, "training": {"augmentation": "standard"}}).augmentation == "crop"
    with pytest.raises(ConfigError, match="materialize: cache cannot follow training.augmentation"):
        config.validate({"training": {"augmentation": "crop"}, "do": {"attacker": {"materialize": "cache"}}})
    # the budget counts the largest population the pruners allow
    assert attackers.max_attackers(p) == 6  # capacity 8, but only 5 iterations + the first
    assert attackers.max_attackers(config.validate({"do": {"iterations": 20}})) == 8
    assert attackers.max_attackers(config.validate({"do": {"iterations": 20, "pruners": []}})) == 21
    # an L2L attacker's network is trained on the batch it attacks: cached only
    l2l = {"do": {"attacker": {"attack": {"name": "l2l", "steps": 5}}}}
    assert attackers.materialize(config.validate(l2l), 45000, (3, 32, 32))[0] == "cache"
    for extra in ({"do": {"attacker": {"materialize": "on_the_fly"}}}, {"training": {"augmentation": "crop"}}):
        with pytest.raises(ConfigError, match="l2l attacker strategies can only be cached"):
            config.validate(merge(l2l, extra))


def test_augmentation_crops_and_flips_on_the_device_reproducibly():
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5) + 1
    a = augment(x, "crop", 2, torch.Generator().manual_seed(0))
    b = augment(x, "crop", 2, torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and a.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):  # every output is a 5x5 window of the zero-padded image
        wins = [padded[i, :, r:r + 5, c:c + 5] for r in range(5) for c in range(5)]
        assert any(torch.equal(a[i], w) for w in wins)
    outs = torch.stack([augment(x, "crop_flip", 2, torch.Generator().manual_seed(s)) for s in range(40)])
    assert (outs != x).flatten(2).any(2).float().mean() > 0.5  # most draws move the image
    flipped = [torch.equal(o[0], x[0].flip(2)) for o in
               (augment(x, "crop_flip", 1, torch.Generator().manual_seed(s)) for s in range(200))]
    assert any(flipped)  # a zero offset with a flip shows up
    assert torch.equal(augment(x, "none", 2, torch.Generator()), x)


def test_augmentation_changes_training_batches_never_payoff_or_test_splits(tmp_path):
    seen = []

    def spy(xb, yb, keys, gen):
        seen.append((xb.clone(), keys.clone()))
        return xb

    from doracle.defenses import make_defense
    from doracle.defenses.training import train

    p = config.validate(params_with({"training": {"augmentation": "crop", "crop_padding": 2}}))
    data.prepare(p, tmp_path / "d.safetensors")
    ds = data.load(tmp_path / "d.safetensors")
    before = {s: ds.x[s].clone() for s in data.SPLITS}
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    train(m, make_defense("erm", p), ds.x["train"], ds.y["train"], p.training, epochs=1, seed=0,
          opponent=spy, opponent_weight=0.5, augmentation=p.augmentation)
    xb, keys = seen[0]
    assert not torch.equal(xb, ds.x["train"][keys])  # the opponent saw augmented batches
    assert all(torch.equal(before[s], ds.x[s]) for s in data.SPLITS)  # nothing changed in place
    # the attacker job and the payoff cells use the unaugmented payoff split
    base = str(tmp_path / "base.safetensors")
    adversarial.train_classifier(p, str(tmp_path / "d.safetensors"), base, role="base", method="erm")
    adversarial.init(p, str(tmp_path / "d.safetensors"), base, str(tmp_path / "a.safetensors"), str(tmp_path / "pop.json"))
    t, meta = load_tensors(tmp_path / "a.safetensors")
    assert meta["materialize"]["train"] == "on_the_fly"
    delta = (t["x_payoff"] - ds.x["payoff"]).abs().amax()
    assert delta <= p.threat_model.eps_value + 1e-6  # a perturbation of the unaugmented payoff images
    pop = json.loads((tmp_path / "pop.json").read_text())
    from doracle.defenses.training import accuracy
    from doracle.games import classifiers

    model = classifiers.load(base)[0]
    assert pop["state"]["payoff"][0][0] == accuracy(model, t["x_payoff"], ds.y["payoff"])


def test_attacker_work_goes_only_where_a_defender_uses_it():
    """``auto`` chooses by counted passes (a cache attacks the training split once per attacker, on
    the fly every epoch of every defender best response); the last iteration's attacker and, with
    opponent_weight 0, every attacker perturbs nothing of the training split."""
    p = config.validate({})
    mode, why = attackers.materialize(p, 1078, (1, 8, 8), iteration=2)
    assert mode == "cache" and "1078 training examples once" in why and str(p.training.epochs * 1078) in why
    assert attackers.materialize(p, 1078, (1, 8, 8), iteration=5) == (
        "none", "iteration 5 is the last: no defender best response trains against it")
    assert attackers.materialize(config.validate({"do": {"iterations": 7}}), 1078, (1, 8, 8), iteration=5)[0] == "cache"
    for mat in ("auto", "cache", "on_the_fly"):
        zero = config.validate({"do": {"defender": {"opponent_weight": 0}, "attacker": {"materialize": mat}}})
        assert attackers.materialize(zero, 1078, (1, 8, 8), iteration=1)[0] == "none"
    # an l2l candidate is cached only, like an l2l attack
    cand = {"do": {"attacker": {"candidates": {"l2l": {"name": "l2l", "steps": 5}}}}}
    assert attackers.materialize(config.validate(cand), 45000, (3, 32, 32), iteration=1)[0] == "cache"
    with pytest.raises(ConfigError, match="do.attacker.candidates.l2l: l2l attacker strategies can only be cached"):
        config.validate(merge(cand, {"training": {"augmentation": "crop"}}))


def test_the_family_search_keeps_the_lowest_expected_accuracy_and_records_every_candidate():
    specs = config.validate({"do": {"attacker": {"candidates": {
        "fgsm": {"name": "fgsm", "steps": 1, "rel_step_size": 1.25},
        "langevin": {"name": "langevin", "steps": 7},
        "pgd40": {"name": "pgd", "steps": 40}}}}}).do.attacker.specs()
    assert list(specs) == ["attack", "fgsm", "langevin", "pgd40"]
    fabricated = {"attack": 0.61, "fgsm": 0.70, "langevin": 0.55, "pgd40": 0.58}
    name, spec, x, acc, record = adversarial.choose_attack(
        specs, lambda s: (fabricated[next(k for k, v in specs.items() if v is s)], torch.full((1,), ord(s.name[0]))))
    assert name == "langevin" and spec.name == "langevin" and x.item() == ord("l") and acc == 0.55
    assert record["chosen"] == "langevin"
    assert {k: c["expected_accuracy_payoff"] for k, c in record["candidates"].items()} == fabricated
    assert record["candidates"]["pgd40"]["attack"]["steps"] == 40
    # ties keep the first (do.attacker.attack); a lone attack is no search at all
    tie = adversarial.choose_attack(specs, lambda s: (0.5, torch.zeros(1)))
    assert tie[0] == "attack" and tie[4]["chosen"] == "attack"
    lone = {"attack": specs["attack"]}
    assert adversarial.choose_attack(lone, lambda s: (0.9, torch.zeros(1)))[4] is None


def test_an_attacker_best_response_with_candidates_runs_the_chosen_attack(tmp_path):
    cands = {"fgsm": {"name": "fgsm", "steps": 1, "rel_step_size": 1.0, "random_start": False},
             "weak": {"name": "pgd", "steps": 1, "rel_step_size": 0.05}}
    run = _run_do(tmp_path, {"do": {"attacker": {"materialize": "cache", "candidates": cands}}}, iterations=1)
    tensors, meta = run["attackers"][1]
    search = meta["search"]
    scores = {k: c["expected_accuracy_payoff"] for k, c in search["candidates"].items()}
    assert set(scores) == {"attack", "fgsm", "weak"} and search["chosen"] == min(scores, key=scores.get)
    assert meta["attack"] == search["candidates"][search["chosen"]]["attack"]
    assert meta["target_expected_accuracy_payoff"] == pytest.approx(scores[search["chosen"]], abs=1e-6)
    assert scores["weak"] > scores["attack"]  # one step of 0.05 eps hardly attacks


@pytest.mark.parametrize("passes", [1, 999, 12_345, 240 * 14 * 3 + 7, 10**6 + 3])
def test_a_passes_matched_baseline_trains_within_half_a_batch_of_the_do_runs_passes(passes):
    n, bs, per_example = 240, 64, 14.0  # batches of 64, 64, 64, 48
    steps = adversarial.steps_for_passes(passes, n, bs, per_example)
    sizes = [min(bs, n - s) for s in range(0, n, bs)]
    spent = sum(sizes[k % len(sizes)] for k in range(steps)) * per_example
    assert abs(spent - passes) <= per_example * bs / 2 or steps == 1
    # one batch more or fewer would be further off
    assert abs(spent - passes) <= abs(spent + per_example * sizes[steps % len(sizes)] - passes)
