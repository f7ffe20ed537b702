"""GAN metrics with the features of a small classifier trained briefly on digits (module fixture):
FID, IS, classes covered, precision/recall/density/coverage, the Inception switch (never fetched)."""

from __future__ import annotations

import copy
import importlib.util
from types import SimpleNamespace
from urllib.error import URLError

import pytest
import torch
from torch import nn

from doracle import config, data, models
from doracle.evaluation import generative as gm


@pytest.fixture(scope="module")
def digits():
    """doracle_cnn_small trained 15 epochs on the digits training split (~97% test accuracy, ~6 s)."""
    torch.set_num_threads(1)
    p = config.validate({})
    raw = data.load_digits_raw()
    idx = data.split_indices(raw.y, dict(p.data.splits), p.seed)
    x = torch.tensor(raw.x, dtype=torch.float32) / raw.scale
    y = torch.tensor(raw.y)
    split = {s: (x[i], y[i]) for s, i in idx.items()}
    torch.manual_seed(0)
    clf = models.create("doracle_cnn_small", num_classes=10, in_chans=1, img_size=8, mean=[0.3], std=[0.4])
    opt = torch.optim.Adam(clf.parameters(), 1e-3)
    g = torch.Generator().manual_seed(0)
    xtr, ytr = split["train"]
    for _ in range(15):
        for b in torch.randperm(len(xtr), generator=g).split(64):
            opt.zero_grad()
            nn.functional.cross_entropy(clf(xtr[b]), ytr[b]).backward()
            opt.step()
    clf.eval()
    xte, yte = split["test"]
    with torch.no_grad():
        assert (clf(xte).argmax(1) == yte).float().mean() > 0.9
    noise = torch.rand(len(xte), 1, 8, 8, generator=g)
    return SimpleNamespace(clf=clf, train=xtr, payoff=split["payoff"][0], test=xte, y_test=yte, noise=noise,
                           features=gm.ClassifierFeatures(clf), logits=gm.ClassifierFeatures(clf, "logits"))


# ---------------------------------------------------------------- FID


def test_fid_of_a_set_against_itself_is_zero(digits):
    """Identical features give identical Gaussians: FID is 0 up to the float64 rounding of the
    matrix square root (eigenvalues of S @ S), ~1e-10 here, far below FID between two samples of
    the same distribution (train vs test, ~5)."""
    assert abs(gm.frechet_distance(digits.features, digits.test, digits.test)) < 1e-6
    same_distribution = gm.frechet_distance(digits.features, digits.train, digits.test)
    assert 1e-3 < same_distribution < 20


def test_fid_is_large_against_noise_and_falls_as_a_mix_gets_more_real(digits):
    """The test split with a share of its images replaced by uniform noise, against the training
    split: more noise, higher FID; all noise is far above two real samples."""
    fids = []
    for share in (1.0, 0.75, 0.5, 0.25, 0.1, 0.0):
        mix = digits.test.clone()
        k = int(share * len(mix))
        mix[:k] = digits.noise[:k]
        fids.append(gm.frechet_distance(digits.features, digits.train, mix))
    assert all(a > b for a, b in zip(fids, fids[1:], strict=False)), fids
    assert fids[0] > 50 * fids[-1]


# ---------------------------------------------------------------- IS


def test_inception_score_of_one_class_is_one(digits):
    threes = digits.test[digits.y_test == 3]
    for splits in (1, 3):
        mean, _ = gm.inception_score(digits.logits, threes, splits=splits)
        assert 1.0 <= mean < 1.1


def test_inception_score_of_a_balanced_set_with_a_confident_classifier_is_the_class_count(digits):
    """IS = exp(H(p(y)) - E H(p(y|x))): confident (logits x 50) and balanced predictions -> ~10;
    the trained classifier itself (~97% confident) scores a little below."""
    sharp = copy.deepcopy(digits.clf)
    head = [m for m in sharp.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        head.weight.mul_(50)
        head.bias.mul_(50)
    counts = gm.predicted_class_counts(sharp, digits.test)
    assert counts.min() >= 0.8 * counts.float().mean()  # balanced
    mean, std = gm.inception_score(gm.ClassifierFeatures(sharp, "logits"), digits.test, splits=1)
    assert mean == pytest.approx(10, abs=0.2) and std == 0.0
    trained, _ = gm.inception_score(digits.logits, digits.test, splits=1)
    assert 8.5 < trained < mean


def test_inception_score_splits_are_seeded_and_leave_the_global_rng_alone(digits):
    state = torch.get_rng_state()
    a = gm.inception_score(digits.logits, digits.test, splits=10, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert a == gm.inception_score(digits.logits, digits.test, splits=10, seed=1)
    assert a != gm.inception_score(digits.logits, digits.test, splits=10, seed=2)
    assert a[1] > 0  # spread over 10 splits


# ---------------------------------------------------------------- classes covered


def test_classes_covered(digits):
    clf = digits.clf
    threes = digits.test[digits.y_test == 3]
    assert gm.classes_covered(clf, digits.test) == 10
    assert gm.classes_covered(clf, threes) == 1
    with torch.no_grad():
        fours = digits.test[(digits.y_test == 4) & (clf(digits.test).argmax(1) == 4)]
    few = torch.cat([threes, fours[:1]])  # one image of 37 (2.7%) for the second class
    assert gm.classes_covered(clf, few) == 2  # default: >= 1% of the predictions
    assert gm.classes_covered(clf, few, min_share=0.05) == 1
    assert gm.classes_covered(clf, few, min_count=1) == 2
    assert gm.classes_covered(clf, few, min_count=2) == 1
    with pytest.raises(ValueError, match="not both"):
        gm.classes_covered(clf, few, min_share=0.1, min_count=2)
    with pytest.raises(ValueError, match="min_share must be in"):
        gm.classes_covered(clf, few, min_share=0.0)


# ---------------------------------------------------------------- precision / recall / density / coverage


def test_coverage_real_vs_real_is_one_and_real_vs_noise_is_zero(digits):
    f = digits.features
    same = gm.prdc(f(digits.test), f(digits.test))
    assert same["coverage"] == 1.0 and same["precision"] == 1.0 and same["recall"] == 1.0
    # another sample of the same distribution (the payoff split, same size): Naeem et al.'s
    # expectation for identical distributions is 1 - 2^-k (0.97 for k = 5) for large samples
    other = gm.prdc(f(digits.payoff), f(digits.test))
    assert other["coverage"] > 0.85 and other["precision"] > 0.85 and other["recall"] > 0.85
    assert 0.7 < other["density"] < 1.3
    assert other["coverage"] > 0.95  # 0.98 here
    # noise (0.04 here); precision (0.10) is the least strict: a few outlying real digits have
    # large balls that catch noise, which is why Naeem et al. propose density and coverage
    noise = gm.prdc(f(digits.payoff), f(digits.noise))
    assert noise["coverage"] < 0.1 and noise["density"] < 0.1 and noise["precision"] < 0.25


def test_prdc_known_answer_in_one_dimension():
    """Reals at 0..9 on a line (k = 1: every radius 1); fakes at 0.5 and 20."""
    real = torch.arange(10.0)[:, None]
    fake = torch.tensor([[0.5], [20.0], [30.0]])
    out = gm.prdc(real, fake, k=1)
    assert out["precision"] == pytest.approx(1 / 3)  # only 0.5 lies in a real ball
    assert out["density"] == pytest.approx(2 / 3)  # 0.5 lies in two balls (around 0 and 1)
    assert out["coverage"] == pytest.approx(2 / 10)  # the balls around 0 and 1 contain a fake
    # fake radii (k = 1): 0.5 -> 19.5, 20 -> 10, 30 -> 10; every real is within 19.5 of 0.5
    assert out["recall"] == 1.0
    with pytest.raises(ValueError, match="more than k"):
        gm.prdc(real, fake, k=3)


# ---------------------------------------------------------------- the feature extractor


def test_classifier_features(digits):
    f, fl = digits.features, digits.logits
    assert f.num_features == 128 and fl.num_features == 10
    x = digits.test[:20]
    out = f(x)
    assert out.shape == (20, 128) and out.dtype == torch.float64
    as_bytes = (x * 255).round().to(torch.uint8)
    torch.testing.assert_close(f(as_bytes), f(as_bytes.float() / 255))
    with torch.no_grad():
        torch.testing.assert_close(fl(x), digits.clf(x).double())
    digits.clf.train()
    try:
        f(x)
        assert all(m.training for m in digits.clf.modules())  # the caller's mode comes back
    finally:
        digits.clf.eval()

    class NotLogits(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(64, 10)

        def forward(self, x):
            return self.fc(x.flatten(1)) * 2

    with pytest.raises(ValueError, match="last nn.Linear does not produce its logits"):
        gm.ClassifierFeatures(NotLogits())(x)


def test_fid_and_is_agree_with_torchmetrics(digits):
    """doracle computes FID and the IS-style score itself (torchmetrics costs twice import torch):
    the same numbers as torchmetrics' FrechetInceptionDistance / InceptionScore fed the same
    float64 features and the same seeded split permutation."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore

    real, fake = digits.train, digits.test[:150]
    fid = FrechetInceptionDistance(feature=digits.features, normalize=False)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    assert gm.frechet_distance(digits.features, real, fake) == pytest.approx(float(fid.compute()), rel=1e-9)
    for splits in (1, 10):
        metric = InceptionScore(feature=digits.logits, splits=splits, normalize=False)
        metric.update(fake)
        assert gm.inception_score(digits.logits, fake, splits=splits, seed=3) == pytest.approx(
            gm._seeded_score(metric, 3), rel=1e-12)


def test_fid_from_features_is_symmetric_and_needs_two_samples():
    a, b = torch.randn(50, 3, dtype=torch.float64), torch.randn(40, 3, dtype=torch.float64) + 1
    assert gm.fid_from_features(a, b) == pytest.approx(gm.fid_from_features(b, a), rel=1e-9)
    assert gm.fid_from_features(a, a) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="at least 2 samples"):
        gm.fid_from_features(a, b[:1])


# ---------------------------------------------------------------- everything at once, and the Inception switch


def test_generative_metrics_computes_the_real_side_once(digits, monkeypatch):
    monkeypatch.setattr(gm, "InceptionMetrics", lambda *a, **k: pytest.fail("built without inception=True"))
    ev = gm.GenerativeMetrics(digits.clf, digits.train)
    real, noise = ev(digits.test), ev(digits.noise)
    assert ev(digits.test) == real  # the fake side is reset, the real side kept
    assert real["fid"] == pytest.approx(gm.frechet_distance(digits.features, digits.train, digits.test), rel=1e-9)
    assert real["classes_covered"] == real["num_classes"] == 10 and sum(real["class_counts"]) == len(digits.test)
    assert real["n_real"] == len(digits.train) and real["features"] == "classifier penultimate (128-d)"
    assert noise["fid"] > 50 * real["fid"] and noise["is_mean"] < real["is_mean"]
    assert noise["coverage"] < real["coverage"] and noise["precision"] < real["precision"]
    assert not any(k.startswith("inception_") for k in real)


@pytest.mark.skipif(importlib.util.find_spec("torch_fidelity") is not None,
                    reason="torch-fidelity is installed: building Inception would fetch its weights")
def test_inception_without_torch_fidelity_says_what_to_install(digits):
    with pytest.raises(gm.InceptionUnavailable, match="torch-fidelity.*doracle\\[inception\\]"):
        gm.GenerativeMetrics(digits.clf, digits.test[:10], inception=True)


def test_inception_weights_that_cannot_be_fetched_give_a_clear_error(digits, monkeypatch):
    def offline(splits):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(gm, "_build_inception", offline)
    with pytest.raises(gm.InceptionUnavailable, match="could not fetch or load the Inception weights.*TORCH_HOME"):
        gm.GenerativeMetrics(digits.clf, digits.test[:10], inception=True)


class StandIn(nn.Module):
    """A small RGB network in Inception's place: uint8 images (normalize=True) to 8 features."""

    num_features = 8

    def __init__(self, seen):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 64, 8))
        self.seen = seen

    def forward(self, imgs):
        self.seen.append((imgs.dtype, imgs.shape[1]))
        return self.net(imgs.float() / 255)


@pytest.mark.filterwarnings("ignore:Metric `InceptionScore` will save")
def test_inception_path_with_a_stand_in_network(digits, monkeypatch):
    """The Inception path's own logic (grayscale to RGB, real statistics kept, seeded IS) with a
    small network standing in for Inception (no weights anywhere)."""
    seen = []

    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.inception import InceptionScore

    def build(splits):
        # what _build_inception asks of torchmetrics, with the stand-in as the network; with a
        # custom network torchmetrics does not cast to uint8 for FID, so the stand-in gets floats there
        return (FrechetInceptionDistance(feature=StandIn(seen), normalize=True, reset_real_features=False),
                InceptionScore(feature=StandIn(seen), splits=splits, normalize=True))

    monkeypatch.setattr(gm, "_build_inception", build)
    ev = gm.GenerativeMetrics(digits.clf, digits.train, inception=True)
    a, b = ev(digits.test), ev(digits.test)
    assert {"inception_fid", "inception_is_mean", "inception_is_std"} <= set(a) and a == b
    assert a["inception_is_std"] > 0 and a["inception_fid"] > 0
    assert seen and all(c == 3 for _, c in seen)  # grayscale digits repeated to 3 channels
    assert {d for d, _ in seen} == {torch.float32, torch.uint8}  # FID floats, IS uint8 (normalize=True)


# ---------------------------------------------------------------- intervals and paired comparisons


def test_fid_interval_covers_the_point_and_shrinks_with_more_samples(digits):
    """The 95% bootstrap interval (real images and generated ones resampled) contains the point
    estimate and is narrower at 360 samples a side than at 90."""
    widths = []
    for n in (90, 360):
        ev = gm.GenerativeMetrics(digits.clf, digits.train[:n], split_size=30, bootstrap=200, seed=1)
        r = ev(digits.test[:n])
        lo, hi = r["fid_interval"]
        assert lo <= r["fid"] <= hi and len(r["fid_bootstrap"]) == 200 and r["bootstrap"] == 200
        widths.append(hi - lo)
    assert widths[1] < 0.75 * widths[0], widths


def test_paired_difference_of_a_model_with_itself_is_zero_and_other_models_are_told_apart(digits):
    """Every model of one experiment is resampled with the same indices (same seed and sizes): a
    model against itself differs by exactly 0 (interval [0, 0], "not distinguishable"); real test
    images are told apart from uniform noise (interval excluding 0)."""
    from doracle.evaluation.intervals import paired_difference
    from doracle.games.gan.game import fid_comparisons

    n = 200
    a = gm.GenerativeMetrics(digits.clf, digits.train[:n], split_size=50, bootstrap=100, seed=4)
    b = gm.GenerativeMetrics(digits.clf, digits.train[:n], split_size=50, bootstrap=100, seed=4)  # another job
    same_a, same_b, noise = a(digits.test[:n]), b(digits.test[:n]), b(digits.noise[:n])
    self_diff = paired_difference(same_a["fid"], same_a["fid_bootstrap"], same_b["fid"], same_b["fid_bootstrap"])
    assert self_diff["difference"] == 0 and self_diff["interval"] == [0.0, 0.0]
    assert self_diff["verdict"] == "not distinguishable"
    comps = fid_comparisons({"base_gan": same_a, "real": same_b, "noise": noise},
                            {"base_gan": same_a["fid_bootstrap"], "real": same_b["fid_bootstrap"],
                             "noise": noise["fid_bootstrap"]})
    assert comps["real - base_gan"]["interval"] == [0.0, 0.0]
    assert comps["noise - base_gan"]["verdict"] == "higher" and comps["noise - base_gan"]["interval"][0] > 0
    assert fid_comparisons({"noise": noise}, {"noise": noise["fid_bootstrap"]}) == {}  # no base GAN: none


def test_recall_coverage_and_classes_have_paired_replicates_on_the_same_resamples(digits):
    """The evaluation records precision / recall / density / coverage / classes covered on FID's
    resamples: a model against itself differs by 0 in every one, the replicates' mean sits near the
    point estimate, and noise is told apart from real images in recall and coverage."""
    from doracle.evaluation.intervals import paired_difference

    n = 200
    ev = gm.GenerativeMetrics(digits.clf, digits.train[:n], split_size=50, bootstrap=100, seed=4, min_share=0.05)
    real, again, noise = ev(digits.test[:n]), ev(digits.test[:n]), ev(digits.noise[:n])
    reps = real["bootstrap_replicates"]
    assert set(reps) == {"precision", "recall", "density", "coverage", "classes_covered"}
    assert all(len(v) == 100 for v in reps.values())
    for key in reps:
        same = paired_difference(real[key], reps[key], again[key], again["bootstrap_replicates"][key])
        assert same["difference"] == 0 and same["interval"] == [0.0, 0.0]
        assert abs(sum(reps[key]) / 100 - real[key]) <= 0.1 * max(abs(real[key]), 1e-9) + 0.05
    for key in ("recall", "coverage"):
        d = paired_difference(noise[key], noise["bootstrap_replicates"][key], real[key], reps[key])
        assert d["verdict"] == "lower" and d["interval"][1] < 0, (key, d)
    # the point estimates are prdc's, unchanged
    feats = gm.extract(gm.ClassifierFeatures(digits.clf, "penultimate"), digits.test[:n])
    assert {k: real[k] for k in ("precision", "recall", "density", "coverage")} == gm.prdc(ev.real_features, feats)
    assert gm.GenerativeMetrics(digits.clf, digits.train[:n], split_size=50)(digits.test[:n])[
        "bootstrap_replicates"] == {}


def test_is_splits_have_a_fixed_size(digits):
    """The IS-style score uses n // split_size splits of exactly split_size images, so it does not
    move with the sample count beyond the extra splits."""
    ev = gm.GenerativeMetrics(digits.clf, digits.train, split_size=100)
    r = ev(digits.test)
    assert r["is_split_size"] == 100 and r["is_splits"] == len(digits.test) // 100
    logits = gm.extract(digits.logits, digits.test)
    assert (r["is_mean"], r["is_std"]) == gm.score_from_logits(logits, splits=r["is_splits"], seed=0, split_size=100)
    with pytest.raises(ValueError, match="IS splits of 100 images"):
        ev(digits.test[:99])


def test_quantiles_and_centered_intervals_match_numpy():
    import numpy as np

    from doracle.evaluation.intervals import centered_interval, quantile

    vals = [3.0, 1.0, 4.0, 1.5, 9.0, 2.6, 5.0]
    for q in (0.0, 0.025, 0.5, 0.9, 1.0):
        assert quantile(vals, q) == pytest.approx(float(np.quantile(vals, q)))
    lo, hi = centered_interval(10.0, vals)
    assert lo == pytest.approx(10 + np.quantile(vals, 0.025) - np.median(vals))
    assert hi == pytest.approx(10 + np.quantile(vals, 0.975) - np.median(vals))
    assert centered_interval(1.0, []) is None
