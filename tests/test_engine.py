import json

import numpy as np
import pytest

from doracle.engine import (
    DOState,
    MatrixGame,
    cells_to_evaluate,
    close,
    extend_payoff,
    initial_state,
    run_double_oracle,
    solve,
)


def test_do_converges_to_the_value_of_a_random_50x50_game():
    a = np.random.default_rng(0).uniform(-1, 1, size=(50, 50))
    game = MatrixGame(a)
    st = run_double_oracle(game, iterations=100, tolerance=1e-9)
    assert st.converged
    assert st.value == pytest.approx(solve(a).value, abs=1e-6)
    # only new cells are evaluated: at most |rows| + |cols| + 1 per iteration, never the whole matrix
    rows, cols = 1, 1
    for h in st.history:
        assert h["evaluations"] <= rows + cols + 1
        rows, cols = h["population_row"], h["population_col"]
    assert game.evaluations == 1 + sum(h["evaluations"] for h in st.history)
    assert game.evaluations < sum(h["population_row"] * h["population_col"] for h in st.history)
    assert len(st.row_ids) < 50  # DO needed only part of the game


@pytest.mark.parametrize("seed", range(3))
def test_do_exact_on_rectangular_games(seed):
    a = np.random.default_rng(seed).normal(size=(30, 20))
    st = run_double_oracle(MatrixGame(a), iterations=60)
    assert st.converged and st.value == pytest.approx(solve(a).value, abs=1e-6)


def test_do_gap_is_the_sum_of_both_gains_and_shrinks_to_zero():
    a = [[0, -0.25, 0.5], [0.25, 0, -0.05], [-0.5, 0.05, 0]]
    st = run_double_oracle(MatrixGame(a), iterations=10)
    assert st.converged
    for h in st.history:
        assert h["gap"] == pytest.approx(max(h["row_gain"], 0) + max(h["col_gain"], 0))
    assert st.history[-1]["gap"] <= 1e-9
    np.testing.assert_allclose(sorted(st.sigma_row), sorted([1 / 16, 10 / 16, 5 / 16]), atol=1e-9)


def test_existing_strategies_are_not_added_twice():
    st = initial_state("r0", "c0", 1.0)
    assert cells_to_evaluate(st.row_ids, st.col_ids, "r0", "c0") == []
    cells = cells_to_evaluate(st.row_ids, st.col_ids, "r1", "c0")
    assert cells == [("r1", "c0")]
    rows, cols, a = extend_payoff(st, "r1", "c0", {("r1", "c0"): 2.0})
    assert rows == ["r0", "r1"] and cols == ["c0"] and a.tolist() == [[1.0], [2.0]]


def test_extend_payoff_refuses_missing_cells():
    st = initial_state("r0", "c0", 1.0)
    with pytest.raises(ValueError, match="missing"):
        extend_payoff(st, "r1", "c1", {("r1", "c0"): 2.0})


def test_state_round_trips_through_json():
    a = np.random.default_rng(1).normal(size=(12, 12))
    st = run_double_oracle(MatrixGame(a), iterations=4, pruners=["capacity"], prune_options={"capacity": 3})
    back = DOState.from_json(json.loads(st.dumps()))
    assert back.row_ids == st.row_ids and back.col_ids == st.col_ids
    np.testing.assert_array_equal(back.payoff, st.payoff)
    np.testing.assert_array_equal(back.sigma_row, st.sigma_row)
    assert back.value == st.value and back.history == st.history and back.iteration == st.iteration
    assert back.dumps() == st.dumps()


def test_capacity_pruning_bounds_the_population_unless_the_equilibrium_needs_more():
    a = np.random.default_rng(2).uniform(-1, 1, size=(40, 40))
    st = run_double_oracle(MatrixGame(a), iterations=15, pruners=["capacity"], prune_options={"capacity": 4})
    for h in st.history:
        over = h["population_row"] > 4 or h["population_col"] > 4
        needed = h["support_row"] > 4 or h["support_col"] > 4
        assert not over or needed


def test_iterations_must_be_positive():
    with pytest.raises(ValueError):
        run_double_oracle(MatrixGame([[1]]), iterations=0)


# ----------------------------------------------------------------------------- convergence within noise


def _one_step(gain_row: float, gain_col: float, se: float, tolerance: float = 0.005):
    """A 1x1 game of value 0.5 extended by one defender and one attacker with the given gains."""
    from doracle.engine import advance

    st = initial_state("d0", "a0", 0.5)
    a = np.array([[0.5, 0.5 - gain_col], [0.5 + gain_row, 0.5]])
    sol = solve(a)
    return advance(st, ["d0", "d1"], ["a0", "a1"], a, "d1", "a1", sol, tolerance=tolerance, pruners=[],
                   prune_options={}, evaluations=3, stderr=np.full((2, 2), se))


def test_a_gap_below_tolerance_is_only_converged_when_its_upper_bound_is_too():
    """Payoff cells of ~360 examples have a standard error of ~0.025: a gap of 0.002 measured with
    them is not evidence of convergence at tolerance 0.005."""
    noisy = _one_step(0.001, 0.001, se=0.025)
    h = noisy.history[-1]
    assert h["gap"] == pytest.approx(0.002) and h["gap"] <= 0.005
    assert h["status"] == "within_noise" and not noisy.converged
    # 1x1 start: each gain compares one new cell with the old value, se = sqrt(se^2 + se^2)
    assert h["row_gain_stderr"] == pytest.approx(0.025 * np.sqrt(2))
    assert h["gap_upper"] == pytest.approx(0.002 + 2 * 1.645 * 0.025 * np.sqrt(2))
    # both gains count: v cancels, the gap's error is that of the two new cells alone
    assert h["gap_stderr"] == pytest.approx(0.025 * np.sqrt(2))
    one = _one_step(0.01, -0.01, se=0.025).history[-1]  # only the defender's gain counts
    assert one["gap_stderr"] == pytest.approx(one["row_gain_stderr"])
    exact = _one_step(0.001, 0.001, se=0.0)
    assert exact.history[-1]["status"] == "converged" and exact.converged
    precise = _one_step(0.001, 0.001, se=0.0005)
    assert precise.history[-1]["status"] == "converged" and precise.converged
    far = _one_step(0.05, 0.0, se=0.0)
    assert far.history[-1]["status"] == "not_converged" and not far.converged


def test_negative_gains_are_not_clipped_out_of_the_upper_bound():
    """An oracle that measured -0.01 may really have gained up to -0.01 + z se."""
    h = _one_step(-0.01, -0.01, se=0.02).history[-1]
    assert h["gap"] == 0.0 and h["gap_upper"] == pytest.approx(2 * (-0.01 + 1.645 * 0.02 * np.sqrt(2)))
    assert h["status"] == "within_noise"


def test_check_params_warns_when_the_payoff_split_cannot_resolve_the_tolerance(cli, tmp_path, root):
    import yaml

    p = yaml.safe_load((root / "params.yaml").read_text())
    f = tmp_path / "p.yaml"
    f.write_text(yaml.safe_dump(p))
    proc = cli("check-params", "--params", f)
    assert proc.returncode == 0 and "valid" in proc.stdout
    assert "do.tolerance" in proc.stderr and "within_noise" in proc.stderr and "359 payoff examples" in proc.stderr
    # the smallest payoff difference the split resolves: 1.96 sqrt(2 * 0.25 / 359) = 0.073
    assert ("payoff split: about 359 examples: two payoff cells closer than 0.073 cannot be told apart "
            "(95 %, worst case); resolving 0.01 takes 19209 examples") in proc.stdout
    p["do"]["tolerance"] = 0.15
    f.write_text(yaml.safe_dump(p))
    proc = cli("check-params", "--params", f)
    assert proc.returncode == 0 and "warning" not in proc.stderr


# ----------------------------------------------------------------------------- the closing best response


@pytest.mark.parametrize("player", ["row", "col"])
@pytest.mark.parametrize("seed", range(3))
def test_the_closing_response_and_exploitability_are_exact_on_matrix_games(seed, player):
    """Stopped early (2 iterations of a 40x40 game), the final meta-strategy is exploitable; the
    closing response is the exact best response to it, its gain the exact exploitability, and the
    final sigma the LP solution of the matrix grown by exactly that one row or column."""
    a = np.random.default_rng(seed).uniform(-1, 1, size=(40, 40))
    game = MatrixGame(a)
    before = run_double_oracle(MatrixGame(a), iterations=2)
    st = run_double_oracle(game, iterations=2, closing=player)
    assert (before.row_ids, before.col_ids) == (st.row_ids[:len(before.row_ids)], st.col_ids[:len(before.col_ids)])
    rows = [int(r[1:]) for r in before.row_ids]
    cols = [int(c[1:]) for c in before.col_ids]
    rec = st.closing
    if player == "row":  # the defended mixture is sigma_col: the best row against it, over the whole game
        payoffs = a[:, cols] @ before.sigma_col
        assert rec["id"] == f"r{int(np.argmax(payoffs))}"
        assert rec["exploitability"] == pytest.approx(payoffs.max() - before.value, abs=1e-9)
    else:
        payoffs = before.sigma_row @ a[rows, :]
        assert rec["id"] == f"c{int(np.argmin(payoffs))}"
        assert rec["exploitability"] == pytest.approx(before.value - payoffs.min(), abs=1e-9)
    assert rec["exploitability"] > 1e-6  # two iterations do not solve a 40x40 game
    assert rec["exploitability_stderr"] == 0.0  # exact payoffs
    grown = (len(st.row_ids) - len(before.row_ids), len(st.col_ids) - len(before.col_ids))
    assert grown == ((1, 0) if player == "row" else (0, 1))
    assert rec["evaluations"] == (len(before.col_ids) if player == "row" else len(before.row_ids))
    sub = a[np.ix_([int(r[1:]) for r in st.row_ids], [int(c[1:]) for c in st.col_ids])]
    np.testing.assert_array_equal(st.payoff, sub)
    lp = solve(sub)
    np.testing.assert_allclose(st.sigma_row, lp.row, atol=1e-12)
    np.testing.assert_allclose(st.sigma_col, lp.col, atol=1e-12)
    assert st.value == pytest.approx(lp.value) == rec["value"]
    assert rec["value_before"] == before.value and st.history == before.history
    assert DOState.from_json(json.loads(st.dumps())).closing == rec


def test_a_converged_run_closes_with_no_gain_and_a_member_adds_nothing():
    a = np.random.default_rng(5).normal(size=(15, 15))
    st = run_double_oracle(MatrixGame(a), iterations=60)
    closed = run_double_oracle(MatrixGame(a), iterations=60, closing="col")
    assert st.converged and closed.closing["exploitability"] == pytest.approx(0.0, abs=1e-9)
    if closed.closing["already_member"]:
        assert closed.col_ids == st.col_ids and closed.closing["evaluations"] == 0
    assert closed.value == pytest.approx(solve(a).value, abs=1e-6)


def test_the_closing_gain_carries_the_cells_standard_errors():
    st = DOState(["r0", "r1"], ["c0"], np.array([[0.6], [0.4]]), np.array([1.0, 0.0]), np.ones(1), 0.6)
    se_old = np.array([[0.02], [0.03]])
    closed, se, rec = close(st, "col", "c1", {("r0", "c1"): 0.5, ("r1", "c1"): 0.9}, payoff_stderr=se_old,
                            stderr={("r0", "c1"): 0.04, ("r1", "c1"): 0.01})
    assert rec["exploitability"] == pytest.approx(0.1)  # v - u(sigma_row, c1) = 0.6 - 0.5
    assert rec["exploitability_stderr"] == pytest.approx(np.sqrt(0.04 ** 2 + 0.02 ** 2))
    np.testing.assert_array_equal(se, [[0.02, 0.04], [0.03, 0.01]])
    assert closed.col_ids == ["c0", "c1"] and closed.value == pytest.approx(solve(closed.payoff).value)
    with pytest.raises(ValueError, match="already closed"):
        close(closed, "col", "c2", {})
    with pytest.raises(ValueError, match="exactly the cells"):
        close(st, "col", "c1", {("r0", "c1"): 0.5})
    with pytest.raises(ValueError, match="the other player's"):
        close(st, "row", "c0", {})


# ----------------------------------------------------------------------------- what the AT report adds


def test_paired_mean_differences_are_exact_at_the_extremes_and_seeded():
    from doracle.evaluation.intervals import paired_mean_difference

    rng = np.random.default_rng(0)
    a = rng.random(300).round(2)
    same = paired_mean_difference(a, a, seed=1)
    assert same["difference"] == 0 and same["interval"] == [0.0, 0.0] and same["verdict"] == "not distinguishable"
    up = paired_mean_difference(np.ones(50), np.zeros(50), seed=1)
    assert up["difference"] == 1 and up["interval"] == [1.0, 1.0] and up["verdict"] == "higher"
    b = (a + rng.normal(0, 0.3, 300)).clip(0, 1)
    one, two = paired_mean_difference(a, b, seed=5), paired_mean_difference(a, b, seed=5)
    assert one == two and one["interval"][0] < one["difference"] < one["interval"][1]
    assert one["difference"] == pytest.approx(float((a - b).mean()))
    # about the normal interval of a mean difference: 1.96 sd / sqrt(n)
    half = 1.96 * float((a - b).std()) / 300 ** 0.5
    assert (one["interval"][1] - one["interval"][0]) / 2 == pytest.approx(half, rel=0.15)
    with pytest.raises(ValueError, match="equally long"):
        paired_mean_difference(a, b[:-1], seed=0)


def test_sigma_stability_separates_signal_from_payoff_noise():
    from doracle.engine import DOState
    from doracle.games.population import sigma_stability

    # row 0 dominates by 0.2: with cells' errors of 0.001 it is always the whole support; with 0.5 it is not
    a = np.array([[0.8, 0.7], [0.6, 0.5]])
    state = DOState(["d0", "d1"], ["a0", "a1"], a, np.array([1.0, 0.0]), np.array([0.0, 1.0]), 0.7)
    tight = sigma_stability(state, np.full_like(a, 0.001), seed=0)
    assert tight["row"]["d0"] == {"sigma": 1.0, "interval": [1.0, 1.0], "in_support": 1.0}
    assert tight["row"]["d1"]["in_support"] == 0.0 and tight["col"]["a1"]["sigma"] == 1.0
    loose = sigma_stability(state, np.full_like(a, 0.5), seed=0)
    assert 0.05 < loose["row"]["d1"]["in_support"] < 0.95 and loose["row"]["d0"]["interval"][0] < 0.5
    assert loose == sigma_stability(state, np.full_like(a, 0.5), seed=0) and loose["resamples"] == 200


def test_transfer_compares_the_defenders_an_attacker_was_computed_against_with_the_others(tmp_path):
    from doracle.artifacts import sidecar, write_json
    from doracle.engine import DOState
    from doracle.evaluation.metrics import transfer

    a = np.array([[0.2, 0.9, 0.5], [0.6, 0.3, 0.5], [0.6, 0.9, 0.5]])
    doc = {"strategies": {}}
    for sid, target in (("a0", ["d0"]), ("a1", ["d1", "d2"]), ("a2", ["d0", "d1", "d2"])):
        path = tmp_path / f"{sid}.safetensors"
        write_json(sidecar(path), {"kind": "attacker", "target": {"ids": target}})
        doc["strategies"][sid] = {"path": str(path)}
    state = DOState(["d0", "d1", "d2"], ["a0", "a1", "a2"], a, np.ones(3) / 3, np.ones(3) / 3, 0.5)
    t = transfer(state, doc)
    assert t["a0"] == {"targets": ["d0"], "accuracy_targets": 0.2, "accuracy_others": 0.6,
                       "transfer_ratio": pytest.approx(0.4 / 0.8)}
    assert t["a1"]["accuracy_targets"] == pytest.approx(0.6) and t["a1"]["accuracy_others"] == 0.9
    assert t["a1"]["transfer_ratio"] == pytest.approx(0.1 / 0.4)
    assert "a2" not in t  # computed against every defender: no others to compare with


def test_the_reports_heatmap_shows_the_matrix_the_deployed_mixture_was_solved_on():
    from doracle.report.do import closed_payoff

    pay = {"payoff": [[0.5]], "stderr": [[0.1]], "row_ids": ["d000"], "col_ids": ["a000"], "iteration": 1}
    open_pop = {"state": {"payoff": [[0.5]], "row_ids": ["d000"], "col_ids": ["a000"], "closing": None},
                "payoff_stderr": [[0.1]]}
    assert closed_payoff(pay, open_pop) is pay
    closed = {"state": {"payoff": [[0.5, 0.2]], "row_ids": ["d000"], "col_ids": ["a000", "a002"],
                        "closing": {"id": "a002"}}, "payoff_stderr": [[0.1, 0.05]]}
    got = closed_payoff(pay, closed)
    assert got["payoff"] == [[0.5, 0.2]] and got["col_ids"] == ["a000", "a002"] and got["stderr"] == [[0.1, 0.05]]
    assert got["iteration"] == "1 + the closing a002"
