"""The honest evaluation suite: ARC known answer, gradient-masking checks, AutoAttack cross-check,
resumable state."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml
from torch import nn

from doracle import config, data, runtime
from doracle.attacks import run_attack
from doracle.config import AttackSpec
from doracle.evaluation.checks import run_checks
from doracle.models.mixture import Mixture
from project import params_with


def threshold_member(k: float, a: float, sign: float) -> nn.Module:
    """A 1-D two-class linear classifier: logit_1 - logit_0 = sign * k * (x - a)."""
    lin = nn.Linear(1, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.0], [sign * k]]))
        lin.bias.copy_(torch.tensor([0.0, -sign * k * a]))
    return lin


def test_arc_finds_what_expected_loss_pgd_misses():
    """A randomised ensemble where the expected-loss gradient points at the steep, unlikely member.

    Member A (p = 0.7, gentle) says class 1 iff x > 0.30; member B (p = 0.3, steep) iff x < 0.55.
    Points x in [0.50, 0.54], label 1, eps = 0.25: both boundaries are reachable but not together,
    so the true robust accuracy is 0.3 (fool A). Expected-loss PGD follows B's steep loss and
    reports about 0.7 (0.44 with random restarts); ARC (the reference's settings: zero start,
    step eta = eps) visits A first and finds 0.3.
    """
    mix = Mixture([threshold_member(2.0, 0.30, +1), threshold_member(40.0, 0.55, -1)], [0.7, 0.3])
    x = 0.50 + 0.04 * torch.rand(200, 1, generator=torch.Generator().manual_seed(0))
    y = torch.ones(200, dtype=torch.long)
    assert mix.expected_accuracy(x, y).mean() == 1.0
    acc = {}
    for name, spec in {
        "pgd": AttackSpec(name="pgd", steps=50, rel_step_size=0.1, restarts=1, random_start=False),
        "pgd_restarts": AttackSpec(name="pgd", steps=20, rel_step_size=0.1, restarts=2, random_start=True),
        "arc": AttackSpec(name="arc", steps=3, rel_step_size=1.0, random_start=False),
    }.items():
        xa = run_attack(spec, mix, x, y, eps=0.25, seed=0)
        assert (xa - x).abs().max() <= 0.25 + 1e-6
        acc[name] = float(mix.expected_accuracy(xa, y).mean())
    assert acc["pgd"] >= 0.65
    assert acc["pgd_restarts"] >= 0.35
    assert acc["arc"] == pytest.approx(0.3, abs=1e-6)


class Softmaxed(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(x).softmax(1)


class Rounded(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(torch.round(x * 4) / 4)  # zero input gradient almost everywhere


class Noisy(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x):
        return self.m(x + 0.01 * torch.randn_like(x))


@pytest.mark.parametrize("wrap,warning", [
    (Softmaxed, "probabilities"), (Rounded, "zero input gradient"), (Noisy, "not deterministic"),
])
def test_gradient_masking_checks_flag_what_they_should(wrap, warning):
    torch.manual_seed(0)
    base = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    x, y = torch.rand(32, 1, 4, 4), torch.randint(0, 3, (32,))
    ok = run_checks([base], x, y)
    assert ok["warnings"] == [] and not ok["stochastic"]
    bad = run_checks([base, wrap(base)], x, y)
    assert len(bad["warnings"]) == 1 and warning in bad["warnings"][0] and "member 1" in bad["warnings"][0]
    assert bad["stochastic"] == (wrap is Noisy)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A PGD-trained digits classifier saved as a real artifact."""
    from doracle.games.at.jobs import train_classifier

    d = tmp_path_factory.mktemp("trained")
    params = config.validate(params_with({"training": {"epochs": 4}, "baselines": {"methods": ["pgd_at"]}}))
    data.prepare(params, d / "data.safetensors")
    train_classifier(params, str(d / "data.safetensors"), str(d / "model.safetensors"), role="baseline",
                     method="pgd_at")
    return d


def test_autoattack_is_at_least_as_strong_as_our_pgd_but_not_much_stronger(trained):
    from doracle.evaluation.autoattack import run_autoattack
    from doracle.games import classifiers

    runtime.setup(0)
    ds = data.load(trained / "data.safetensors")
    model, _ = classifiers.load(trained / "model.safetensors")
    x, y = ds.x["test"], ds.y["test"]
    eps = 32 / 255
    pgd = run_attack(AttackSpec(name="pgd", steps=20, rel_step_size=0.1, restarts=2), Mixture([model]), x, y,
                     eps=eps, seed=0)
    acc_pgd = float(Mixture([model]).expected_accuracy(pgd, y).mean())
    cfg = config.AutoAttackCfg(version="custom", attacks=["apgd-ce", "apgd-t"], apgd_iterations=100,
                               target_classes=3)
    xa = run_autoattack(model, x, y, eps=eps, norm="linf", cfg=cfg, seed=0, stochastic=False, device="cpu")
    assert (xa - x).abs().max() <= eps + 1e-6
    acc_aa = float(Mixture([model]).expected_accuracy(xa, y).mean())
    assert 0.2 < acc_pgd < 0.95, "the model should be somewhat robust for this check to mean anything"
    assert acc_aa <= acc_pgd + 0.01, f"our PGD ({acc_pgd}) is stronger than AutoAttack ({acc_aa}): a bug?"
    assert acc_pgd - acc_aa <= 0.05, f"our PGD ({acc_pgd}) is much weaker than AutoAttack ({acc_aa})"


def _evaluate_cmd(d, params_file, out, state):
    return [sys.executable, "-m", "doracle", "evaluate", "--params", str(params_file), "--data",
            str(d / "data.safetensors"), "--model", "pgd_at", "--checkpoint", str(d / "model.safetensors"),
            "--state", str(state), "--out", str(out)]


def test_killed_evaluation_resumes_without_redoing_finished_attacks(trained, tmp_path):
    p = params_with({"evaluation": {"max_examples": None,
                                    "autoattack": {"version": "custom", "attacks": ["apgd-ce", "apgd-t"],
                                                   "apgd_iterations": 100, "target_classes": 9}}})
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(p))
    state, out = tmp_path / "eval.state.json", tmp_path / "eval.json"
    # the job in the command's own process (no fork server: SIGKILL to the command would reach a
    # forked job a moment later, not at once; tests/test_forkserver.py checks that it does)
    proc = subprocess.Popen(_evaluate_cmd(trained, params_file, out, state), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "DORACLE_FORKSERVER": "0"})
    deadline = time.time() + 120
    while not (state.is_file() and len(json.loads(state.read_text())["units"]) >= 2):
        assert proc.poll() is None, f"the evaluation ended before two attacks were saved: {proc.communicate()}"
        assert time.time() < deadline, "no two attacks saved in 120 s"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists(), "the evaluation finished before it could be killed"
    done = set(json.loads(state.read_text())["units"])
    assert len(done) >= 2
    res = subprocess.run(_evaluate_cmd(trained, params_file, out, state), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    log = res.stdout + res.stderr
    assert f"resuming: {len(done)} finished attack(s) reused" in log
    for key in done:  # finished attacks are not run again
        assert f"pgd_at: {key}:" not in log
    assert not state.exists(), "state is removed after success"
    resumed = json.loads(out.read_text())
    fresh_out = tmp_path / "fresh.json"
    subprocess.run(_evaluate_cmd(trained, params_file, fresh_out, tmp_path / "other.state.json"), check=True,
                   capture_output=True)
    fresh = json.loads(fresh_out.read_text())
    assert resumed["robust_accuracy"] == fresh["robust_accuracy"]


def test_a_state_for_another_attack_set_is_refused(trained, tmp_path):
    state, out = tmp_path / "eval.state.json", tmp_path / "eval.json"
    state.write_text(json.dumps({"fingerprint": "made-for-something-else", "units": {"pgd": [0.0] * 360}}))
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params_with({"evaluation": {"autoattack": None, "eps_curve": None}})))
    res = subprocess.run(_evaluate_cmd(trained, params_file, out, state), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "not resuming from it, starting over" in res.stdout + res.stderr
    r = json.loads(out.read_text())
    assert r["robust_accuracy"]["pgd"] > 0.0  # the stale all-zero unit was not used
    assert set(r["robust_accuracy"]) == {"fgsm", "pgd", "arc", "worst_case"}
    assert r["threat_model"]["eps"] == "32/255" and r["threat_model"]["n_examples"] == 60


def bn_member(seed: int) -> nn.Module:
    """A small classifier with BatchNorm and dropout, in eval mode as loaded artifacts are."""
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.3), nn.Flatten(),
                      nn.Linear(4 * 8 * 8, 10))
    with torch.no_grad():  # non-trivial running statistics, so an overwrite shows
        m[1].running_mean.uniform_(-0.1, 0.1)
        m[1].running_var.uniform_(0.5, 1.5)
    return m.eval()


def test_the_whole_suite_leaves_members_modes_and_batchnorm_statistics_unchanged():
    """A mixture of BatchNorm/dropout members through every evaluator (AutoAttack on the
    logit-averaged ensemble included): no member ends in train mode, no running statistic moves."""
    from doracle.evaluation.suite import State, Target, run_suite

    params = config.validate(params_with({"evaluation": {"max_examples": 16}}))
    members = [bn_member(0), bn_member(1)]
    before = [{k: v.clone() for k, v in m.state_dict().items()} for m in members]
    x = torch.rand(16, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(1))
    target = Target("mix", Mixture(members, [0.6, 0.4]), ["a", "b"], ["sha-a", "sha-b"])
    out = run_suite(params, target, x, y, seed=0, device="cpu", state=State(None, "fp", print), log=lambda *_: None)
    assert {"autoattack", "autoattack_per_member", "pgd_per_member", "arc"} <= set(out["robust_accuracy"])
    # the members' disagreement on the mixture's PGD examples is a diagnostic, not an attack
    assert set(out["diagnostics"]) == {"disagreement_pgd"} and 0 <= out["diagnostics"]["disagreement_pgd"] <= 1
    assert not any(k.startswith("diag") for k in out["robust_accuracy"])
    assert len(out["worst_case_per_example"]) == 16
    for m, b in zip(members, before, strict=True):
        assert not any(sub.training for sub in m.modules()), "a member was left in train mode"
        for k, v in m.state_dict().items():
            assert torch.equal(v, b[k]), f"buffer {k} changed during evaluation"


def test_eval_mode_restores_each_submodule_of_a_wrapper_built_in_train_mode():
    from doracle.models.mixture import eval_mode

    members = [bn_member(0), bn_member(1).train()]
    wrapper = nn.ModuleList(members)  # built in train mode, like any fresh nn.Module
    assert wrapper.training
    with eval_mode([wrapper]):
        assert not any(m.training for m in wrapper.modules())
    assert wrapper.training and not members[0].training and members[1].training


def test_custom_autoattack_budget_reaches_apgds_step_size_schedule():
    from pyautoattack.autopgd_base import APGDAttack

    from doracle.evaluation.autoattack import build_autoattack

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    for iters in (10, 25, 250):
        cfg = config.AutoAttackCfg(version="custom", attacks=["apgd-ce", "apgd-t"], apgd_iterations=iters,
                                   target_classes=2)
        aa = build_autoattack(model, eps=0.1, norm="linf", cfg=cfg, seed=0, stochastic=False, device="cpu")
        ref = APGDAttack(model, n_iter=iters, eps=0.1)  # the schedule APGD sizes for `iters` iterations
        for attack in (aa.apgd, aa.apgd_targeted):
            assert attack.n_iter == iters
            assert (attack.n_iter_2, attack.n_iter_min, attack.size_decr) == \
                (ref.n_iter_2, ref.n_iter_min, ref.size_decr)
        assert aa.apgd_targeted.n_target_classes == 2 and aa.apgd.n_restarts == 1


@pytest.mark.gpu
def test_the_probabilities_check_runs_on_the_models_device():
    """On CUDA the check used to build a CPU tensor next to the outputs and crash in exactly the
    case it should warn about."""
    torch.manual_seed(0)
    base = nn.Sequential(nn.Flatten(), nn.Linear(16, 3)).to("cuda")
    x, y = torch.rand(32, 1, 4, 4, device="cuda"), torch.randint(0, 3, (32,), device="cuda")
    bad = run_checks([Softmaxed(base)], x, y)
    assert len(bad["warnings"]) == 1 and "probabilities" in bad["warnings"][0]


@pytest.fixture(scope="module")
def trained_mixture(trained):
    """The PGD-trained classifier and an ERM one (3 epochs), as a 0.6 / 0.4 mixture, with test data."""
    from doracle.games import classifiers
    from doracle.games.at.jobs import train_classifier

    params = config.validate(params_with({"training": {"epochs": 3}, "baselines": {"methods": ["erm"]}}))
    train_classifier(params, str(trained / "data.safetensors"), str(trained / "erm.safetensors"), role="baseline",
                     method="erm")
    ds = data.load(trained / "data.safetensors")
    models = [classifiers.load(trained / f)[0] for f in ("model.safetensors", "erm.safetensors")]
    return Mixture(models, [0.6, 0.4]), ds.x["test"][:120], ds.y["test"][:120]


@pytest.mark.parametrize("norm,eps", [("linf", 32 / 255), ("l2", 1.0)])
def test_more_arc_passes_never_raise_and_usually_lower_its_accuracy(trained_mixture, norm, eps):
    """Each pass only accepts what does not raise the exact expected accuracy, and a run of k
    passes is a prefix of a run of k + 1: per example, accuracy never rises with more passes.
    (The old ARC recomputed the same rejected candidates on every pass: 3 and 10 passes gave the
    same numbers, and for one model more than one pass did nothing.)"""
    mix, x, y = trained_mixture
    for m in (mix, Mixture([mix.models[0]])):
        accs = []
        for passes in (1, 2, 4, 8):
            spec = AttackSpec(name="arc", steps=passes, rel_step_size=0.25, restarts=1, random_start=True)
            xa = run_attack(spec, m, x, y, eps=eps, norm=norm, seed=3)
            delta = (xa - x).flatten(1)
            size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
            assert size.max() <= eps + 1e-5 and xa.min() >= 0 and xa.max() <= 1
            accs.append(m.expected_accuracy(xa, y))
        for fewer, more in zip(accs, accs[1:], strict=False):
            assert (more <= fewer + 1e-6).all()
        assert accs[-1].mean() < accs[0].mean() - 0.01, [float(a.mean()) for a in accs]


def test_arc_restarts_only_improve(trained_mixture):
    mix, x, y = trained_mixture
    one, two = (mix.expected_accuracy(run_attack(AttackSpec(name="arc", steps=2, rel_step_size=0.5, restarts=r,
                                                             random_start=True), mix, x, y, eps=32 / 255, seed=5), y)
                for r in (1, 2))
    assert (two <= one + 1e-6).all() and two.mean() <= one.mean()


def test_arc_stops_on_examples_every_member_gets_wrong_and_keeps_their_perturbation(trained_mixture):
    """An example with expected accuracy 0 is at ARC's minimum: it leaves the loop with the
    perturbation that got it there (from a zero start, one already lost stays the clean point)
    and stays at 0; the others are attacked as before (ties accepted), and the attack's accuracy
    equals that of the same attack run on the examples still standing alone."""
    mix, x, y = trained_mixture
    spec = AttackSpec(name="arc", steps=3, rel_step_size=1.0, restarts=1, random_start=False)
    lost = mix.expected_accuracy(x, y) == 0
    assert lost.sum() >= 5, "needs examples every member already gets wrong"
    xa = run_attack(spec, mix, x, y, eps=32 / 255, seed=0)
    moved = (xa - x).flatten(1).abs().amax(1) > 0
    assert not moved[lost].any()
    acc = mix.expected_accuracy(xa, y)
    assert (acc[lost] == 0).all() and moved[~lost].float().mean() > 0.5
    standing = run_attack(spec, mix, x[~lost], y[~lost], eps=32 / 255, seed=0)
    assert torch.allclose(mix.expected_accuracy(standing, y[~lost]), acc[~lost])


@pytest.mark.parametrize("content", ['{"fingerprint": "f", "un', "[1, 2]", '{"fingerprint": "f", "units": {"a": "x"}}',
                                     '{"fingerprint": "f", "units": [1]}', '{"fingerprint": "f", "units": NaN}'])
def test_a_damaged_evaluation_state_is_started_over_not_trusted(tmp_path, content):
    """The evaluation state is a cache of finished attacks: truncated, not an object, or holding
    no valid units, it is reported and ignored (the evaluation starts over), never a traceback."""
    from doracle.evaluation.suite import State

    path = tmp_path / "e.state.json"
    path.write_text(content)
    said = []
    st = State(str(path), "f", said.append)
    assert st.units == {} and len(said) == 1 and "starting over" in said[0] and str(path) in said[0]
    st.put("a", torch.tensor([1.0, 0.0]))  # and it is rewritten whole on the next finished attack
    assert State(str(path), "f", said.append).units == {"a": [1.0, 0.0]}


def test_disagreement_counts_the_examples_on_which_members_predict_different_classes():
    from doracle.evaluation.suite import disagreement

    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [-1.0, 3.0]])
    same, swap = torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        same.weight.copy_(torch.eye(2))
        swap.weight.copy_(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert disagreement([same, same], x).tolist() == [0, 0, 0, 0]
    assert disagreement([same, swap], x).tolist() == [1, 1, 1, 1]
    half = torch.nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        half.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))  # agrees with `same` on some examples only
    d = disagreement([same, same, half], x)
    preds = torch.stack([same(x).argmax(1), half(x).argmax(1)])
    assert d.tolist() == (preds[0] != preds[1]).float().tolist()
