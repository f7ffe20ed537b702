import json

import numpy as np
import pytest

from doracle.engine import (
    DOState,
    MatrixGame,
    cells_to_evaluate,
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
    p["do"]["tolerance"] = 0.15
    f.write_text(yaml.safe_dump(p))
    proc = cli("check-params", "--params", f)
    assert proc.returncode == 0 and "warning" not in proc.stderr
