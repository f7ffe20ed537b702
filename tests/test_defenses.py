"""Contract tests over the defense registry: a few steps on a tiny model, finite and decreasing loss."""

import copy

import pytest
import torch
from torch import nn

from doracle import config
from doracle.defenses import DEFENSES, make_defense
from doracle.defenses.training import train


@pytest.fixture
def toy_data():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(256, 1, 4, 4, generator=g)
    y = (x.flatten(1)[:, :8].sum(1) > x.flatten(1)[:, 8:].sum(1)).long()
    return x, y


@pytest.mark.parametrize("name", DEFENSES.names())
def test_defense_trains_without_nan_and_reduces_its_loss(name, toy_data):
    x, y = toy_data
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
    p = config.validate({"training": {"lr": 0.01}})
    defense = make_defense(name, p)
    clean_before = nn.functional.cross_entropy(model(x), y).item()
    stats = train(model, defense, x, y, p.training, epochs=8, seed=0)
    h = stats["loss_history"]
    assert all(torch.isfinite(torch.tensor(h)))
    assert nn.functional.cross_entropy(model(x), y).item() < clean_before
    if not defense.adversary_learns:  # L2L's loss is against an attacker that improves as it trains
        assert h[-1] < h[0]
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())


def test_the_opponent_term_is_added_to_the_defenses_whole_loss(toy_data):
    """The defender best response's loss is defense loss + w * CE(f(x_opp), y): with w = 0 exactly
    the defense's own update (PGD-AT, bit for bit), and with w > 0 one SGD step moves the weights by
    lr times the sum of both gradients (the mixture term's gradient reaches the model)."""
    x, y = toy_data
    p = config.validate({"training": {"optimizer": "sgd", "momentum": 0.0, "lr": 0.1, "batch_size": len(y)}})

    def opp(xb, yb, keys, gen):  # one attacker strategy: a fixed perturbation of each input
        return 1 - x[keys]

    def trained(w, opponent):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
        train(m, make_defense("pgd_at", p), x, y, p.training, epochs=2, seed=0, opponent=opponent, opponent_weight=w)
        return m

    plain, zero = trained(0.0, None), trained(0.0, opp)
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), zero.state_dict().values(), strict=True))
    assert not torch.equal(trained(0.5, opp)[1].weight, plain[1].weight)

    # one step of ERM + w CE(x_opp): the update is lr (grad CE(x) + w grad CE(x_opp)), x_opp at the batch's keys
    w = 0.7
    torch.manual_seed(1)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    ref = copy.deepcopy(m)
    train(m, make_defense("erm", p), x, y, p.training, epochs=1, seed=3, opponent=opp, opponent_weight=w)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(3))  # the loop's first draw
    xb, yb = x[perm], y[perm]
    loss = nn.functional.cross_entropy(ref(xb), yb) + w * nn.functional.cross_entropy(ref(1 - xb), yb)
    grads = torch.autograd.grad(loss, list(ref.parameters()))
    for before, g, after in zip(ref.parameters(), grads, m.parameters(), strict=True):
        torch.testing.assert_close(after, before - 0.1 * g, rtol=0, atol=1e-6)


def test_max_steps_stops_part_way_through_an_epoch(toy_data):
    x, y = toy_data
    p = config.validate({"training": {"batch_size": 8}})
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    stats = train(m, make_defense("erm", p), x, y, p.training, epochs=5, seed=0, max_steps=11)
    assert len(y) == 256 and stats["steps"] == 11 and stats["epochs"] == 1  # 32 batches an epoch
    assert stats["compute"] == {"forward_passes": 11 * 8, "backward_passes": 11 * 8}  # ERM: one of each per example


# ----------------------------------------------------------------------------- method-specific


def test_trades_natural_term_uses_clean_inputs(toy_data):
    x, y = toy_data
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    p = config.validate({"defenses": {"trades": {"options": {"beta": 0.0}}}})
    d = make_defense("trades", p)
    gen = torch.Generator().manual_seed(0)
    # with beta = 0 the loss is exactly the natural term: CE on the clean batch
    assert d.loss(model, x, y, gen).item() == pytest.approx(nn.functional.cross_entropy(model(x), y).item(), abs=1e-7)
    d6 = make_defense("trades", config.validate({}))
    assert d6.opts.beta == 6.0
    assert d6.loss(model, x, y, gen) > d.loss(model, x, y, gen)


def test_fgsm_rs_starts_inside_the_ball_and_steps_1_25_eps():
    from doracle.attacks import ATTACKS
    from doracle.attacks.base import random_start
    from doracle.models.mixture import Mixture

    p = config.validate({})
    d = make_defense("fgsm_rs", p)
    assert d.attack.random_start and d.attack.rel_step_size == 1.25 and d.lr_schedule == "cyclic"
    x = torch.full((512, 1, 4, 4), 0.5)
    gen = torch.Generator().manual_seed(0)
    d0 = random_start(x, d.eps, "linf", gen)
    assert d0.abs().max() <= d.eps + 1e-7 and d0.abs().max() > 0.9 * d.eps  # uniform in the ball
    assert abs(float(d0.mean())) < 0.05 * d.eps
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    y = torch.zeros(512, dtype=torch.long)
    xa = ATTACKS.get("fgsm")(Mixture([m]), x, y, eps=d.eps, norm="linf", spec=d.attack, generator=gen)
    delta = xa - x
    assert delta.abs().max() <= d.eps + 1e-6
    # a 1.25 eps step from a random start: clipped at the ball's surface for most coordinates
    assert (delta.abs() > d.eps - 1e-6).float().mean() > 0.5
    plain = ATTACKS.get("fgsm")(Mixture([m]), x, y, eps=d.eps, norm="linf",
                                spec=d.attack.model_copy(update={"random_start": False}), generator=gen)
    assert not torch.equal(xa, plain)


def test_cyclic_schedule_rises_then_falls():
    from doracle.defenses.training import cyclic_lr

    lrs = [cyclic_lr(s, 100, 0.2) for s in range(1, 101)]
    assert max(lrs) == pytest.approx(0.2) and lrs.index(max(lrs)) == 39 and lrs[-1] == 0.0
    assert all(a <= b for a, b in zip(lrs[:40], lrs[1:40], strict=False))


def test_piecewise_schedule_decays_at_its_milestones(toy_data):
    from doracle.defenses.training import piecewise_lr

    lrs = [piecewise_lr(s, 200, 0.1, [0.5, 0.75], 0.1) for s in range(1, 201)]
    assert lrs[99] == pytest.approx(0.1) and lrs[100] == pytest.approx(0.01)
    assert lrs[149] == pytest.approx(0.01) and lrs[150] == pytest.approx(0.001) and lrs[-1] == pytest.approx(0.001)
    # and the training loop applies it: the optimizer ends at the last decayed rate
    x, y = toy_data
    p = config.validate({"training": {"optimizer": "sgd", "lr": 0.1, "lr_schedule": "piecewise",
                                      "lr_milestones": [0.3], "lr_decay": 0.5}})
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    seen = []
    d = make_defense("erm", p)
    orig = d.loss

    def spy(model, xb, yb, gen):
        seen.append(opt_lr[0]())
        return orig(model, xb, yb, gen)

    import doracle.defenses.training as tr

    made = tr.make_optimizer

    def keep(model, cfg):
        opt = made(model, cfg)
        opt_lr[0] = lambda: opt.param_groups[0]["lr"]
        return opt

    opt_lr = [None]
    d.loss = spy
    tr.make_optimizer, saved = keep, tr.make_optimizer
    try:
        train(m, d, x, y, p.training, epochs=10, seed=0)
    finally:
        tr.make_optimizer = saved
    assert seen[0] == pytest.approx(0.1) and seen[-1] == pytest.approx(0.05)
    assert sorted(set(round(v, 6) for v in seen)) == [0.05, 0.1]


def test_amp_perturbation_is_norm_bounded_and_changes_the_update(toy_data):
    from doracle.defenses.amp import AMP

    x, y = toy_data

    def fresh():
        torch.manual_seed(0)
        return nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))

    def closure_for(m, opt):
        def closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(m(x), y)
            loss.backward()
            return loss
        return closure

    m_sgd, m_amp = fresh(), fresh()
    sgd = torch.optim.SGD(m_sgd.parameters(), lr=0.1)
    sgd.step(closure_for(m_sgd, sgd))
    amp = AMP(torch.optim.SGD(m_amp.parameters(), lr=0.1), eps=0.05, inner_lr=10.0, inner_steps=2)
    before = [p.detach().clone() for p in m_amp.parameters()]
    amp.step(closure_for(m_amp, amp))
    assert all(n <= 0.05 + 1e-6 for n in amp.last_perturbation_norms)
    assert max(amp.last_perturbation_norms) == pytest.approx(0.05, rel=1e-4)  # large zeta: on the sphere
    assert any(not torch.allclose(a, b) for a, b in zip(m_sgd.parameters(), m_amp.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(before, m_amp.parameters(), strict=True))
    # works with an LR scheduler on the wrapper
    sched = torch.optim.lr_scheduler.StepLR(amp, step_size=1, gamma=0.5)
    sched.step()
    assert amp.base.param_groups[0]["lr"] == pytest.approx(0.05)


def test_dale_dual_variable_stays_nonnegative_and_moves_the_right_way(toy_data):
    x, y = toy_data
    p = config.validate({"training": {"lr": 0.01}})
    for rho, direction in ((10.0, "down"), (0.0, "up")):
        q = config.validate({**p.model_dump(), "defenses": {"dale": {"options": {"rho": rho, "eta_nu": 0.5, "nu0": 0.3}}}})
        d = make_defense("dale", q)
        torch.manual_seed(0)
        m = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
        stats = train(m, d, x, y, q.training, epochs=2, seed=0)["method"]
        assert stats["nu_min"] >= 0.0
        if direction == "down":  # clean CE < rho: the constraint is slack, nu falls to 0 and stays (no crash)
            assert stats["nu_final"] == 0.0
        else:  # clean CE > rho = 0: nu grows
            assert stats["nu_final"] > 0.3


def test_l2l_attacker_increases_the_classifiers_loss():
    from doracle.attacks.l2l import new_attacker, train_attacker
    from doracle.models.mixture import Mixture

    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    for p in m.parameters():
        p.requires_grad_(False)
    x, y = torch.rand(128, 1, 4, 4), torch.randint(0, 3, (128,))
    net = new_attacker(1, 16, torch.Generator().manual_seed(0), "cpu")
    h = train_attacker(net, Mixture([m]), x, y, eps=0.1, norm="linf", steps=60, lr=1e-2)
    assert sum(h[-5:]) / 5 > sum(h[:5]) / 5 + 0.01


def _kl(p_from, p_to):
    """KL(p_from || p_to), batch mean, written out."""
    return (p_from * (p_from.log() - p_to.log())).sum(1).mean()


def test_dale_kl_variant_uses_kl_of_clean_against_adversarial(toy_data):
    """advbench's KL-DALE-PD and TRADES use KL(p_clean || p_adv), as does the method's own attack."""
    from doracle.defenses.methods import _kl_adversary

    x, y = toy_data
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    with torch.no_grad():
        model[1].weight.mul_(10)  # confident enough that the two KL directions differ
    p = config.validate({"threat_model": {"eps": "64/255"},
                         "defenses": {"dale": {"options": {"variant": "kl", "primal_dual": False, "nu0": 0.5}}}})
    d = make_defense("dale", p)
    loss = d.loss(model, x, y, torch.Generator().manual_seed(7))
    x_adv = _kl_adversary(model, x, d.eps, d.norm, d.attack.steps, d.attack.rel_step_size * d.eps,
                          torch.Generator().manual_seed(7))  # the same adversarial points
    with torch.no_grad():
        pc, pa = model(x).softmax(1), model(x_adv).softmax(1)
        expected = _kl(pc, pa) + 0.5 * nn.functional.cross_entropy(model(x), y)
        assert abs(_kl(pc, pa) - _kl(pa, pc)) > 1e-4, "the two directions must differ for this test to mean anything"
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)


def test_langevin_objective_is_exact_and_keeps_its_gradient_on_confident_examples():
    from doracle.attacks.langevin import log_one_minus_py
    from doracle.models.mixture import Mixture

    lin = nn.Linear(2, 3)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[40.0, 0.0], [0.0, 1.0], [0.0, -1.0]]))
        lin.bias.zero_()
    x = torch.tensor([[1.0, 0.3], [0.05, 0.2]], requires_grad=True)
    y = torch.tensor([0, 1])
    v = log_one_minus_py(Mixture([lin]), x, y)
    with torch.no_grad():
        z = lin(x)
        ref = torch.log1p(-z.double().softmax(1)[torch.arange(2), y])
        exact0 = float(torch.logsumexp(z[0, 1:], 0) - torch.logsumexp(z[0], 0))
    got = v.detach()
    # example 0 is so confident (p_y ~ 1 - 4e-18) that float32's 1 - p_y is 0: the exact value is ~ -40
    assert got[0].item() == pytest.approx(exact0, rel=1e-5)
    assert got[0].item() < -35 and got[1].item() == pytest.approx(ref[1].item(), rel=1e-4)
    (g,) = torch.autograd.grad(v.sum(), x)
    assert torch.isfinite(g).all() and g[0].abs().sum() > 1.0, "a clamp would zero this gradient"


def test_langevin_and_local_ball_take_l2_steps_under_the_l2_threat_model():
    """A sign step under L2 has norm eta * sqrt(d): one step of 0.2 on 64 pixels would be 1.6."""
    from doracle.attacks.langevin import langevin
    from doracle.config import AttackSpec
    from doracle.models.mixture import Mixture

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 3))
    x = 0.25 + 0.5 * torch.rand(32, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (32,), generator=torch.Generator().manual_seed(1))
    spec = AttackSpec(name="langevin", steps=1, rel_step_size=0.1, restarts=1, random_start=True)
    xa = langevin(Mixture([model]), x, y, eps=2.0, norm="l2", spec=spec, generator=torch.Generator().manual_seed(2),
                  noise=0.0)
    step = (xa - x).flatten(1).norm(dim=1)
    assert step.max() <= 0.2 + 0.02 and step.min() >= 0.2 - 0.02  # eta, plus the 0.001 N(0, I) start


@pytest.mark.parametrize("norm,eps", [("linf", 32 / 255), ("l2", 1.5)])
def test_local_ball_adversary_stays_in_its_local_ball(toy_data, norm, eps):
    x, y = toy_data
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
    p = config.validate({"threat_model": {"norm": norm, "eps": eps}})
    d = make_defense("local_ball", p)
    x_w, x_l = d.local_points(model, x, y, torch.Generator().manual_seed(0))
    r = d.opts.radius * eps
    q = float("inf") if norm == "linf" else 2.0
    assert (x_l - x_w).flatten(1).norm(p=q, dim=1).max() <= r * (1 + 1e-5)
    assert (x_l - x).flatten(1).norm(p=q, dim=1).max() <= eps * (1 + 1e-5)
    assert x_l.min() >= 0 and x_l.max() <= 1
    assert (x_l - x_w).abs().sum() > 0  # it does move


def test_a_diverging_loss_stops_training_with_a_clear_error(toy_data, tmp_path):
    from doracle.errors import TrainingDiverged

    x, y = toy_data
    p = config.validate({"training": {"lr": 1e38, "optimizer": "sgd"}})
    torch.manual_seed(0)
    m = nn.Sequential(nn.Flatten(), nn.Linear(16, 2))
    ckpt = tmp_path / "m.resume.safetensors"
    with pytest.raises(TrainingDiverged, match=r"training loss became (nan|inf) in epoch \d .*training.lr"):
        train(m, make_defense("erm", p), x, y, p.training, epochs=6, seed=0, checkpoint=ckpt)
    assert not ckpt.exists()  # the diverged state is not saved for a resume
