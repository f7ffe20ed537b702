import numpy as np
import pytest

from doracle.engine import PRUNERS, prune, solve
from doracle.errors import ConfigError


def ids(n, p):
    return [f"{p}{i}" for i in range(n)]


def run(a, names, **opts):
    a = np.asarray(a, dtype=float)
    r, c = ids(a.shape[0], "r"), ids(a.shape[1], "c")
    res = prune(a, r, c, solve(a), names, **opts)
    return res, [r[i] for i in res.keep_r], [c[j] for j in res.keep_c]


def test_iterated_weak_dominance_removes_exactly_the_dominated():
    # r2 is dominated by r0; once r2 is gone, c2 is dominated (for the minimiser) by c0.
    a = [[1, 0, 2], [0, 1, 1], [0, 0, 0]]
    res, rows, cols = run(a, ["dominance"])
    assert rows == ["r0", "r1"] and cols == ["c0", "c1"]
    assert [(x["player"], x["id"]) for x in res.records] == [("row", "r2"), ("col", "c2")]
    assert all(x["rule"] == "dominance" and "dominated by" in x["reason"] for x in res.records)


def test_no_dominance_in_rps():
    res, rows, cols = run([[0, -1, 1], [1, 0, -1], [-1, 1, 0]], ["dominance"])
    assert rows == ["r0", "r1", "r2"] and cols == ["c0", "c1", "c2"] and res.records == []


def test_duplicates_keep_the_oldest_copy():
    a = [[0, -1, 1], [1, 0, -1], [0, -1, 1], [-1, 1, 0]]
    _, rows, _ = run(a, ["dominance"])
    assert rows == ["r0", "r1", "r3"]


def test_pruning_never_empties_a_population():
    _, rows, cols = run(np.ones((4, 3)), ["dominance"])
    assert rows == ["r0"] and cols == ["c0"]
    _, rows, cols = run([[5.0]], ["dominance", "capacity"], capacity=1)
    assert rows == ["r0"] and cols == ["c0"]


@pytest.mark.parametrize("seed", range(10))
def test_dominance_keeps_the_value(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(-3, 4, size=(8, 8)).astype(float)
    res, _, _ = run(a, ["dominance"])
    sub = a[np.ix_(res.keep_r, res.keep_c)]
    assert solve(sub).value == pytest.approx(solve(a).value, abs=1e-9)


def test_capacity_drops_outside_support_first_and_keeps_needed_strategies():
    # RPS plus a dominated row and column: support is exactly RPS
    a = np.array([[0, -1, 1, 2], [1, 0, -1, 2], [-1, 1, 0, 2], [-2, -2, -2, -2]])
    res, rows, cols = run(a, ["capacity"], capacity=3)
    assert rows == ["r0", "r1", "r2"] and cols == ["c0", "c1", "c2"]
    # capacity 2 cannot be met without changing the value: the record says so
    res, rows, cols = run(a, ["capacity"], capacity=2)
    assert rows == ["r0", "r1", "r2"] and cols == ["c0", "c1", "c2"]
    assert any(x["id"] is None and "equilibrium needs them" in x["reason"] for x in res.records)
    assert solve(a[np.ix_(res.keep_r, res.keep_c)]).value == pytest.approx(0.0, abs=1e-9)


def test_capacity_may_drop_support_when_the_value_provably_stays():
    # two identical rows share the row player's mass; one can go
    a = np.array([[1, -1], [1, -1], [-1, 1]])
    res, rows, _ = run(a, ["capacity"], capacity=2)
    assert len(rows) == 2
    assert solve(a[np.ix_(res.keep_r, res.keep_c)]).value == pytest.approx(solve(a).value, abs=1e-9)


def test_unknown_pruner_lists_the_valid_ones():
    assert PRUNERS.names() == ["capacity", "dominance"]
    with pytest.raises(ConfigError, match="valid names: capacity, dominance"):
        run([[1, 0], [0, 1]], ["support"])
