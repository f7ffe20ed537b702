"""Meta-solvers for two-player zero-sum meta-games (the row player maximises).

Each solver maps a payoff matrix to a :class:`MetaSolution`: both players' mixed strategies and
the game value. Registered by name in :data:`META_SOLVERS`:

* ``lp``        exact Nash equilibrium by linear programming (HiGHS via scipy), the default;
* ``uniform``   uniform over each population (the "fictitious self-play" baseline of PSRO);
* ``prd``       projected replicator dynamics (Lanctot et al. 2017), time-averaged;
* ``fictitious_play``  Brown's fictitious play, empirical averages.

Only ``lp`` is exact; the others report the value of the strategies they return.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from doracle.errors import SolverError
from doracle.registry import Registry


@dataclass(frozen=True)
class MetaSolution:
    row: np.ndarray
    col: np.ndarray
    value: float
    solver: str
    exact: bool

    def to_json(self) -> dict:
        return {
            "row": [float(p) for p in self.row],
            "col": [float(p) for p in self.col],
            "value": float(self.value),
            "solver": self.solver,
            "exact": self.exact,
        }


META_SOLVERS: Registry = Registry("meta-solver")


def check_payoff_matrix(payoff) -> np.ndarray:
    """Return ``payoff`` as a finite 2-D float array or raise :class:`SolverError` saying why."""
    try:
        a = np.asarray(payoff, dtype=float)
    except (TypeError, ValueError) as exc:
        raise SolverError(f"payoff matrix is not numeric: {exc}") from None
    if a.ndim != 2:
        raise SolverError(f"payoff matrix must be 2-D, got shape {a.shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise SolverError(f"payoff matrix is empty (shape {a.shape})")
    bad = ~np.isfinite(a)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise SolverError(f"payoff matrix has a non-finite entry {a[i, j]} at row {i}, column {j}")
    return a


def _clean(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 0.0, None)
    s = p.sum()
    if not np.isfinite(s) or s <= 0:
        raise SolverError("solver returned an invalid mixed strategy")
    return p / s


def solve(payoff, solver: str = "lp", **kwargs) -> MetaSolution:
    """Solve ``payoff`` (row maximises) with the registered ``solver``."""
    fn = META_SOLVERS.get(solver)
    a = check_payoff_matrix(payoff)
    return fn(a, **kwargs)


def _lp_equilibrium(a: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Both players' equilibrium strategies and the value from ONE LP and its dual.

    With B = a + s > 0 (a shift that leaves the equilibria unchanged):
    min 1'u s.t. B'u >= 1, u >= 0 gives x = u / sum(u) and value 1 / sum(u) - s; the duals w of
    the constraints solve max 1'w s.t. Bw <= 1, w >= 0, so the column strategy is w / sum(w).
    """
    m, n = a.shape
    # far from unit scale (HiGHS takes coefficients >= 1e20 as infinite and its tolerances are
    # absolute), solve the game scaled by a power of two: exact, and the equilibria are the same
    big = float(np.abs(a).max())
    k = 0 if big == 0 or 2.0 ** -20 <= big <= 2.0 ** 20 else -math.frexp(big)[1]
    a = np.ldexp(a, k)
    shift = 1.0 - float(a.min())
    b = a + shift
    # Dense games: HiGHS' interior point (with crossover to a vertex) beats its simplex from about
    # 200x200 up (bench/bench_engine.py); presolve finds nothing to remove in a dense game.
    large = m * n >= 200 * 200
    # imported here, not with the module: every torch job imports the engine, few of them solve
    from scipy.optimize import linprog

    res = linprog(np.ones(m), A_ub=-b.T, b_ub=-np.ones(n), bounds=(0.0, None),
                  method="highs-ipm" if large else "highs", options={"presolve": False} if large else {})
    if res.status != 0 or res.x is None:
        raise SolverError(f"LP solver did not report optimality (status {res.status}: {res.message})")
    u = res.x
    w = -np.asarray(res.ineqlin.marginals)
    total = float(u.sum())
    if total <= 0 or not np.isfinite(total):
        raise SolverError("LP solver returned a degenerate solution")
    return _clean(u), _clean(w), math.ldexp(1.0 / total - shift, -k)


@META_SOLVERS.register("lp")
def lp(a: np.ndarray) -> MetaSolution:
    """Exact zero-sum Nash equilibrium (HiGHS): the row strategy from the LP, the column one from its dual."""
    row, col, v = _lp_equilibrium(a)
    scale = max(1.0, float(np.abs(a).max()))
    # Certify: neither player can gain by deviating from the returned pair.
    if exploitability(a, row, col) > 1e-6 * scale:
        raise SolverError(f"LP solution is not an equilibrium (exploitability {exploitability(a, row, col):.3g})")
    return MetaSolution(row, col, float(row @ a @ col), "lp", True)


@META_SOLVERS.register("uniform")
def uniform(a: np.ndarray) -> MetaSolution:
    m, n = a.shape
    row, col = np.full(m, 1.0 / m), np.full(n, 1.0 / n)
    return MetaSolution(row, col, float(row @ a @ col), "uniform", False)


def _project_simplex(v: np.ndarray, floor: float = 0.0) -> np.ndarray:
    """Euclidean projection onto {p : p_i >= floor, sum p = 1} (Duchi et al. 2008)."""
    n = v.size
    w = v - floor
    total = 1.0 - floor * n
    u = np.sort(w)[::-1]
    css = np.cumsum(u) - total
    idx = np.arange(1, n + 1)
    rho = np.nonzero(u - css / idx > 0)[0][-1]
    theta = css[rho] / (rho + 1)
    return np.maximum(w - theta, 0.0) + floor


@META_SOLVERS.register("prd")
def prd(a: np.ndarray, iterations: int = 20000, dt: float = 1e-2, floor: float = 1e-6) -> MetaSolution:
    """Projected replicator dynamics; returns the average of the second half of the trajectory."""
    m, n = a.shape
    floor = min(floor, 0.5 / max(m, n))
    x, y = np.full(m, 1.0 / m), np.full(n, 1.0 / n)
    scale = max(1e-12, float(np.abs(a).max()))
    sx, sy = np.zeros(m), np.zeros(n)
    half = iterations // 2
    for t in range(iterations):
        fx = a @ y / scale
        fy = -(x @ a) / scale
        x = _project_simplex(x + dt * x * (fx - x @ fx), floor)
        y = _project_simplex(y + dt * y * (fy - y @ fy), floor)
        if t >= half:
            sx += x
            sy += y
    row, col = _clean(sx), _clean(sy)
    return MetaSolution(row, col, float(row @ a @ col), "prd", False)


@META_SOLVERS.register("fictitious_play")
def fictitious_play(a: np.ndarray, iterations: int = 10000) -> MetaSolution:
    """Brown's simultaneous fictitious play; returns the empirical frequencies."""
    m, n = a.shape
    cx, cy = np.zeros(m), np.zeros(n)
    cx[0] += 1
    cy[0] += 1
    for _ in range(iterations):
        i = int(np.argmax(a @ (cy / cy.sum())))
        j = int(np.argmin((cx / cx.sum()) @ a))
        cx[i] += 1
        cy[j] += 1
    row, col = _clean(cx), _clean(cy)
    return MetaSolution(row, col, float(row @ a @ col), "fictitious_play", False)


def exploitability(a, row, col) -> float:
    """Sum of both players' best-response gains against (row, col) in the matrix game ``a``."""
    a = np.asarray(a, dtype=float)
    v = float(np.asarray(row) @ a @ np.asarray(col))
    return float(np.max(a @ col) - v) + float(v - np.min(np.asarray(row) @ a))
