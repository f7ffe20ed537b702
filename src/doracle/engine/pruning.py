"""Population pruning, registered by name in :data:`PRUNERS`.

A pruner sees the restricted meta-game (payoff matrix, both populations, the current equilibrium)
and returns the indices to keep for each player plus a record of what it dropped and why.

Guarantees (tested):

* a population is never emptied;
* ``dominance`` removes only weakly dominated strategies (iterated, with a tolerance). In a
  zero-sum game that leaves the value unchanged (up to the tolerance per removal);
* ``capacity`` first drops strategies outside the equilibrium support (lowest meta-probability
  first, then oldest). It drops a support strategy only when re-solving the smaller game shows the
  value unchanged within the tolerance; otherwise the population stays over capacity and the record
  says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from doracle.engine.solvers import solve
from doracle.registry import Registry

ROW, COL = "row", "col"


@dataclass
class PruneResult:
    keep_r: list[int]
    keep_c: list[int]
    records: list[dict] = field(default_factory=list)


PRUNERS: Registry = Registry("pruner")


def _dominated(a: np.ndarray, tol: float) -> tuple[str, int, int] | None:
    """First weakly dominated strategy as (player, dominated index, dominating index), or None.

    Row k weakly dominates row i if a[k] >= a[i] - tol everywhere (the row player maximises);
    column k dominates column j if a[:, k] <= a[:, j] + tol everywhere. With duplicates the later
    (newer) copy is removed, so the older artifact is kept.
    """
    m, n = a.shape
    if m > 1:
        for i in range(m - 1, -1, -1):
            for k in range(m):
                if k != i and np.all(a[k] >= a[i] - tol):
                    # exact duplicates: drop the later one only
                    if np.all(np.abs(a[k] - a[i]) <= tol) and k > i:
                        continue
                    return ROW, i, k
    if n > 1:
        for j in range(n - 1, -1, -1):
            for k in range(n):
                if k != j and np.all(a[:, k] <= a[:, j] + tol):
                    if np.all(np.abs(a[:, k] - a[:, j]) <= tol) and k > j:
                        continue
                    return COL, j, k
    return None


@PRUNERS.register("dominance")
def dominance(a, row_ids, col_ids, sol, *, tol: float = 1e-9, solver: str = "lp", **_) -> PruneResult:
    """Iterated elimination of weakly dominated strategies, one at a time."""
    keep_r, keep_c = list(range(len(row_ids))), list(range(len(col_ids)))
    records = []
    while True:
        sub = a[np.ix_(keep_r, keep_c)]
        found = _dominated(sub, tol)
        if found is None:
            break
        player, i, k = found
        keep = keep_r if player == ROW else keep_c
        ids = row_ids if player == ROW else col_ids
        dropped, by = keep[i], keep[k]
        records.append({
            "player": player, "id": ids[dropped], "rule": "dominance",
            "reason": f"weakly dominated by {ids[by]} (tolerance {tol:g})",
        })
        keep.pop(i)
    return PruneResult(keep_r, keep_c, records)


@PRUNERS.register("capacity")
def capacity(a, row_ids, col_ids, sol, *, capacity: int, tol: float = 1e-9, solver: str = "lp", **_) -> PruneResult:
    """Keep at most ``capacity`` strategies per player without changing the game value."""
    if capacity < 1:
        raise ValueError("capacity must be >= 1")
    keep_r, keep_c = list(range(len(row_ids))), list(range(len(col_ids)))
    records: list[dict] = []
    value = float(sol.value)
    for player, keep, ids, probs in ((ROW, keep_r, row_ids, sol.row), (COL, keep_c, col_ids, sol.col)):
        # candidates: lowest probability first, oldest (lowest index) first among ties
        order = sorted(range(len(keep)), key=lambda t: (probs[t], t))
        for t in order:
            if len(keep) <= capacity:
                break
            idx = keep.index(t)
            trial = keep[:idx] + keep[idx + 1:]
            if probs[t] <= 0.0:
                keep.pop(idx)
                records.append({"player": player, "id": ids[t], "rule": "capacity",
                                "reason": f"outside the equilibrium support; over capacity {capacity}"})
                continue
            r = trial if player == ROW else keep_r
            c = keep_c if player == ROW else trial
            new_value = solve(a[np.ix_(r, c)], solver).value
            if abs(new_value - value) <= tol:
                keep.pop(idx)
                records.append({"player": player, "id": ids[t], "rule": "capacity",
                                "reason": f"p={probs[t]:.4g}; value unchanged without it "
                                          f"({new_value:.6g} vs {value:.6g}); over capacity {capacity}"})
        if len(keep) > capacity:
            records.append({"player": player, "id": None, "rule": "capacity",
                            "reason": f"kept {len(keep)} > capacity {capacity}: the equilibrium needs them"})
    return PruneResult(keep_r, keep_c, records)


def prune(a, row_ids, col_ids, sol, pruners: list[str], **options) -> PruneResult:
    """Apply ``pruners`` in order; each sees the result of the previous one (re-solved)."""
    a = np.asarray(a, dtype=float)
    solver = options.get("solver", "lp")
    keep_r, keep_c = list(range(len(row_ids))), list(range(len(col_ids)))
    records: list[dict] = []
    cur_sol = sol
    for name in pruners:
        fn = PRUNERS.get(name)
        sub = a[np.ix_(keep_r, keep_c)]
        res = fn(sub, [row_ids[i] for i in keep_r], [col_ids[j] for j in keep_c], cur_sol, **options)
        keep_r = [keep_r[i] for i in res.keep_r]
        keep_c = [keep_c[j] for j in res.keep_c]
        records.extend(res.records)
        assert keep_r and keep_c, "pruning emptied a population"
        cur_sol = solve(a[np.ix_(keep_r, keep_c)], solver)
    return PruneResult(keep_r, keep_c, records)
