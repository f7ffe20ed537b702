import numpy as np
import pytest
import scipy.optimize

from doracle.engine import META_SOLVERS, exploitability, solve
from doracle.errors import ConfigError, SolverError

RPS = [[0, -1, 1], [1, 0, -1], [-1, 1, 0]]
BIASED_RPS = [[0, -0.25, 0.5], [0.25, 0, -0.05], [-0.5, 0.05, 0]]
PENNIES = [[1, -1], [-1, 1]]


def test_rps_uniform_value_zero():
    sol = solve(RPS, "lp")
    np.testing.assert_allclose(sol.row, [1 / 3] * 3, atol=1e-9)
    np.testing.assert_allclose(sol.col, [1 / 3] * 3, atol=1e-9)
    assert abs(sol.value) < 1e-9 and sol.exact


def test_biased_rps_known_answer():
    sol = solve(BIASED_RPS, "lp")
    np.testing.assert_allclose(sol.row, [1 / 16, 10 / 16, 5 / 16], atol=1e-9)
    np.testing.assert_allclose(sol.col, [1 / 16, 10 / 16, 5 / 16], atol=1e-9)
    assert abs(sol.value) < 1e-9


def test_matching_pennies():
    sol = solve(PENNIES)
    np.testing.assert_allclose(sol.row, [0.5, 0.5], atol=1e-9)
    np.testing.assert_allclose(sol.col, [0.5, 0.5], atol=1e-9)
    assert abs(sol.value) < 1e-9


def test_pure_saddle_point():
    a = [[3, 1, 4], [5, 2, 6], [0, 1, 1]]  # row 1 / column 1 is a saddle point, value 2
    sol = solve(a)
    np.testing.assert_allclose(sol.row, [0, 1, 0], atol=1e-9)
    np.testing.assert_allclose(sol.col, [0, 1, 0], atol=1e-9)
    assert sol.value == pytest.approx(2.0)


def test_duplicated_strategies_keep_the_value():
    a = np.array(BIASED_RPS)
    dup = a[[0, 1, 1, 2, 0]][:, [2, 0, 1, 1, 2]]  # duplicated rows and columns, shuffled
    sol = solve(dup)
    assert sol.value == pytest.approx(0.0, abs=1e-9)
    assert exploitability(dup, sol.row, sol.col) < 1e-8
    # mass on duplicates adds up to the original equilibrium
    assert sol.row[1] + sol.row[2] == pytest.approx(10 / 16, abs=1e-8)


@pytest.mark.parametrize("seed", range(5))
def test_lp_is_an_equilibrium_on_random_games(seed):
    a = np.random.default_rng(seed).normal(size=(7, 11))
    sol = solve(a)
    assert exploitability(a, sol.row, sol.col) < 1e-8
    neg = solve(-a.T)
    assert neg.value == pytest.approx(-sol.value, abs=1e-9)


@pytest.mark.parametrize("name", META_SOLVERS.names())
def test_every_solver_returns_distributions(name):
    sol = solve(BIASED_RPS, name)
    for p in (sol.row, sol.col):
        assert np.all(p >= 0) and p.sum() == pytest.approx(1.0)
    assert sol.solver == name
    assert sol.value == pytest.approx(sol.row @ np.array(BIASED_RPS) @ sol.col)


@pytest.mark.parametrize("name,tol", [("prd", 0.02), ("fictitious_play", 0.02)])
def test_iterative_solvers_approach_the_equilibrium(name, tol):
    sol = solve(BIASED_RPS, name)
    np.testing.assert_allclose(sol.row, [1 / 16, 10 / 16, 5 / 16], atol=tol)
    assert exploitability(BIASED_RPS, sol.row, sol.col) < tol


def test_uniform_is_not_exploitation_free():
    assert exploitability(BIASED_RPS, *(lambda s: (s.row, s.col))(solve(BIASED_RPS, "uniform"))) > 0.1


@pytest.mark.parametrize("bad,match", [
    ([[0, np.nan], [1, 0]], "non-finite"),
    ([[0, np.inf], [1, 0]], "non-finite"),
    (np.zeros((0, 3)), "empty"),
    ([1, 2, 3], "2-D"),
    ([["a", "b"]], "not numeric"),
])
def test_bad_matrices_are_rejected(bad, match):
    with pytest.raises(SolverError, match=match):
        solve(bad)


def test_unknown_solver_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="valid names: fictitious_play, lp, prd, uniform"):
        solve(RPS, "simplex")


def test_solver_without_optimality_is_an_error(monkeypatch):
    def not_optimal(*args, **kwargs):
        return scipy.optimize.OptimizeResult(status=1, x=None, message="Iteration limit reached")

    monkeypatch.setattr(scipy.optimize, "linprog", not_optimal)  # the solver imports it when it solves
    with pytest.raises(SolverError, match="did not report optimality.*Iteration limit"):
        solve(RPS, "lp")


def test_lp_on_a_large_game_uses_the_interior_point_path_and_is_exact():
    a = np.random.default_rng(7).normal(size=(260, 210))  # >= 200x200: interior point + crossover
    sol = solve(a)
    assert exploitability(a, sol.row, sol.col) < 1e-8
