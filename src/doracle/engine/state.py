"""Double-oracle state and the steps of one iteration, shared by the in-process loop and the
pipeline jobs (which run each step as a separate process on artifacts).

One iteration t:

1. the oracles return ``new_row`` (against sigma_col) and ``new_col`` (against sigma_row);
2. :func:`cells_to_evaluate` lists the only payoff cells that are new; :func:`extend_payoff`
   grows the matrix (known entries are reused, a strategy already present is not added twice);
3. the meta-solver gives (sigma_row, sigma_col, value) on the grown matrix;
4. :func:`gains` gives each oracle's improvement over the previous meta-strategy: the DO gap is
   ``max(row_gain, 0) + max(col_gain, 0)``; :func:`gap_record` adds the standard errors of the gains
   (from the payoff cells' standard errors, when payoffs are estimates) and the convergence status;
5. pruning shrinks the populations; ``converged`` only when the gap *and* its upper confidence
   bound are <= tolerance (``within_noise`` when only the estimate is).

After the last iteration, :func:`close` adds one more best response: the opponent of the deployed
player answers the deployed player's final meta-strategy (PSRO's remedy for a last best response
that nobody answered). Its gain over the final game value, with its standard error, is the
deployed mixture's exploitability; its row or column joins the matrix, and the meta-game is solved
once more (no pruning): the deployed mixture comes from that solve.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from doracle.engine.pruning import prune
from doracle.engine.solvers import MetaSolution, solve
from doracle.errors import ArtifactError


@dataclass
class DOState:
    """Everything the next iteration needs. Serialises to JSON and back exactly."""

    row_ids: list[str]
    col_ids: list[str]
    payoff: np.ndarray
    sigma_row: np.ndarray
    sigma_col: np.ndarray
    value: float
    iteration: int = 0
    converged: bool = False
    history: list[dict] = field(default_factory=list)
    #: the closing best response's record (:func:`close`), None before it
    closing: dict | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["payoff"] = self.payoff.tolist()
        d["sigma_row"] = self.sigma_row.tolist()
        d["sigma_col"] = self.sigma_col.tolist()
        return d

    @classmethod
    def from_json(cls, d: dict) -> DOState:
        try:
            st = cls(
                row_ids=list(d["row_ids"]), col_ids=list(d["col_ids"]),
                payoff=np.asarray(d["payoff"], dtype=float).reshape(len(d["row_ids"]), len(d["col_ids"])),
                sigma_row=np.asarray(d["sigma_row"], dtype=float),
                sigma_col=np.asarray(d["sigma_col"], dtype=float),
                value=float(d["value"]), iteration=int(d["iteration"]),
                converged=bool(d["converged"]), history=list(d["history"]),
                closing=None if d.get("closing") is None else dict(d["closing"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArtifactError(f"not a valid double-oracle state: {exc!r}") from None
        if st.sigma_row.shape != (len(st.row_ids),) or st.sigma_col.shape != (len(st.col_ids),):
            raise ArtifactError("double-oracle state: meta-strategy sizes do not match the populations")
        return st

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=1)


def initial_state(row_id: str, col_id: str, payoff: float) -> DOState:
    """The 1x1 game the loop starts from."""
    return DOState([row_id], [col_id], np.array([[float(payoff)]]), np.ones(1), np.ones(1), float(payoff))


def cells_to_evaluate(row_ids: list[str], col_ids: list[str], new_row: str, new_col: str) -> list[tuple[str, str]]:
    """The pairs whose payoff is unknown once ``new_row``/``new_col`` join: at most m + n + 1."""
    rows = row_ids + ([new_row] if new_row not in row_ids else [])
    cols = col_ids + ([new_col] if new_col not in col_ids else [])
    cells = []
    if new_row not in row_ids:
        cells += [(new_row, c) for c in cols]
    if new_col not in col_ids:
        cells += [(r, new_col) for r in rows if r in row_ids]
    return cells


def extend_payoff(state: DOState, new_row: str, new_col: str, values: dict[tuple[str, str], float]):
    """The grown (row_ids, col_ids, payoff); ``values`` must hold exactly the new cells."""
    rows = state.row_ids + ([new_row] if new_row not in state.row_ids else [])
    cols = state.col_ids + ([new_col] if new_col not in state.col_ids else [])
    a = np.full((len(rows), len(cols)), np.nan)
    a[: len(state.row_ids), : len(state.col_ids)] = state.payoff
    for (r, c), v in values.items():
        a[rows.index(r), cols.index(c)] = v
    if np.isnan(a).any():
        missing = [(rows[i], cols[j]) for i, j in np.argwhere(np.isnan(a))]
        raise ValueError(f"payoff cells missing after extension: {missing}")
    return rows, cols, a


def gains(state: DOState, rows: list[str], cols: list[str], a: np.ndarray, new_row: str, new_col: str) -> tuple[float, float]:
    """Each oracle's improvement over the previous meta-strategy (can be negative for
    approximate oracles): row_gain = u(new_row, sigma_col) - v, col_gain = v - u(sigma_row, new_col)."""
    old_c = [cols.index(c) for c in state.col_ids]
    old_r = [rows.index(r) for r in state.row_ids]
    row_gain = float(a[rows.index(new_row), old_c] @ state.sigma_col) - state.value
    col_gain = state.value - float(state.sigma_row @ a[old_r, cols.index(new_col)])
    return row_gain, col_gain


#: one-sided 95% normal quantile: the upper confidence bound of each oracle's gain
Z_UPPER = 1.645

STATUSES = ("converged", "within_noise", "not_converged")


def gap_record(state: DOState, rows: list[str], cols: list[str], a: np.ndarray, new_row: str, new_col: str, *,
               tolerance: float, stderr: np.ndarray | None = None) -> dict:
    """Both oracles' gains, their standard errors, the DO gap, its upper bound and the status.

    With estimated payoffs (cell standard errors ``stderr``, cells treated as independent and the
    meta-strategies as fixed): var(row_gain) = sum_j sigma_col_j^2 se[new_row, j]^2 + var(v) with
    var(v) = sum_ij (sigma_row_i sigma_col_j)^2 se_ij^2, and the column's counterpart. The gap's upper
    bound is max(row_gain + z se_row, 0) + max(col_gain + z se_col, 0), z = :data:`Z_UPPER`. Status:
    ``converged`` (gap and upper bound <= tolerance), ``within_noise`` (only the gap is: the payoff
    estimates cannot tell), ``not_converged``. Exact payoffs (no stderr) have a zero band.
    """
    row_gain, col_gain = gains(state, rows, cols, a, new_row, new_col)
    se = np.zeros_like(a) if stderr is None else np.asarray(stderr, dtype=float)
    old_r = [rows.index(r) for r in state.row_ids]
    old_c = [cols.index(c) for c in state.col_ids]
    var_v = float((np.outer(state.sigma_row, state.sigma_col) ** 2 * se[np.ix_(old_r, old_c)] ** 2).sum())
    var_new_row = float((state.sigma_col ** 2 * se[rows.index(new_row), old_c] ** 2).sum())
    var_new_col = float((state.sigma_row ** 2 * se[old_r, cols.index(new_col)] ** 2).sum())
    se_row, se_col = float(np.sqrt(var_new_row + var_v)), float(np.sqrt(var_new_col + var_v))
    gap = max(row_gain, 0.0) + max(col_gain, 0.0)
    # the gap's own error: with both gains counted v cancels (gap = u(new_row, sigma_col) - u(sigma_row, new_col))
    if row_gain > 0 and col_gain > 0:
        gap_se = float(np.sqrt(var_new_row + var_new_col))
    else:
        gap_se = se_row if row_gain > 0 else se_col if col_gain > 0 else 0.0
    upper = max(row_gain + Z_UPPER * se_row, 0.0) + max(col_gain + Z_UPPER * se_col, 0.0)
    status = "not_converged" if gap > tolerance else ("converged" if upper <= tolerance else "within_noise")
    return {"row_gain": row_gain, "col_gain": col_gain, "row_gain_stderr": se_row, "col_gain_stderr": se_col,
            "gap": gap, "gap_stderr": gap_se, "gap_upper": upper, "status": status,
            "tolerance": tolerance}


def advance(state: DOState, rows, cols, a, new_row, new_col, sol: MetaSolution, *, tolerance: float,
            pruners: list[str], prune_options: dict, evaluations: int, stderr: np.ndarray | None = None) -> DOState:
    """Close iteration ``state.iteration + 1``: record the gap and its confidence, prune, test
    convergence (only a ``converged`` status stops the iterations)."""
    gap = gap_record(state, rows, cols, a, new_row, new_col, tolerance=tolerance, stderr=stderr)
    res = prune(a, rows, cols, sol, pruners, **prune_options) if pruners else None
    keep_r = res.keep_r if res else list(range(len(rows)))
    keep_c = res.keep_c if res else list(range(len(cols)))
    sub = a[np.ix_(keep_r, keep_c)]
    final = solve(sub, prune_options.get("solver", "lp")) if res else sol
    record = {
        "iteration": state.iteration + 1,
        "new_row": new_row, "new_col": new_col,
        **{k: v for k, v in gap.items() if k != "tolerance"},
        "value": float(sol.value), "value_after_prune": float(final.value),
        "support_row": int(np.count_nonzero(sol.row > 1e-9)),
        "support_col": int(np.count_nonzero(sol.col > 1e-9)),
        "population_row": len(keep_r), "population_col": len(keep_c),
        "sigma_row": dict(zip(rows, map(float, sol.row), strict=True)),
        "sigma_col": dict(zip(cols, map(float, sol.col), strict=True)),
        "pruned": res.records if res else [],
        "evaluations": evaluations,
    }
    return DOState(
        row_ids=[rows[i] for i in keep_r], col_ids=[cols[j] for j in keep_c], payoff=sub,
        sigma_row=final.row, sigma_col=final.col, value=float(final.value),
        iteration=state.iteration + 1, converged=gap["status"] == "converged",
        history=state.history + [record],
    )


def close(state: DOState, player: str, new_id: str, values: dict[tuple[str, str], float], *, solver: str = "lp",
          stderr: dict[tuple[str, str], float] | None = None, payoff_stderr: np.ndarray | None = None):
    """The closing step: ``new_id``, a best response of ``player`` (``"row"`` or ``"col"``) to the
    other player's final meta-strategy, joins the matrix, and the meta-game is solved once more.

    ``values`` (and ``stderr``, the cells' standard errors) hold exactly the new row's cells against
    every column (or the new column's against every row); none when ``new_id`` is already a member
    of ``player``'s population (an exact oracle may answer so: nothing joins); ``payoff_stderr`` is the standard error
    of the cells already in the matrix. The deployed player is the other one; the closing gain is
    ``u(new_row, sigma_col) - v`` (``v - u(sigma_row, new_col)`` for a column), its standard error as
    in :func:`gap_record`. Returns ``(closed state, grown standard errors or None, record)``; the
    state keeps its iteration, convergence and history, and ``closing`` holds the record.
    """
    if player not in ("row", "col"):
        raise ValueError(f"player must be 'row' or 'col', got {player!r}")
    if state.closing is not None:
        raise ValueError(f"the state is already closed (by {state.closing['id']})")
    own, others = (state.row_ids, state.col_ids) if player == "row" else (state.col_ids, state.row_ids)
    if new_id in others:
        raise ValueError(f"the closing strategy {new_id!r} is the other player's")
    se_old = np.zeros_like(state.payoff) if payoff_stderr is None else np.asarray(payoff_stderr, dtype=float)
    member = new_id in own  # an exact oracle may answer with a member: nothing joins, its cells are known
    if member:
        k = own.index(new_id)
        new, se_new = (state.payoff[k], se_old[k]) if player == "row" else (state.payoff[:, k], se_old[:, k])
        cells = []
    else:
        cells = [(new_id, o) if player == "row" else (o, new_id) for o in others]
        if set(values) != set(cells):
            raise ValueError(f"the closing values must hold exactly the cells {cells}, got {sorted(values)}")
        new = np.array([values[c] for c in cells], dtype=float)
        se_new = np.array([(stderr or {}).get(c, 0.0) for c in cells], dtype=float)
    var_v = float((np.outer(state.sigma_row, state.sigma_col) ** 2 * se_old ** 2).sum())
    rows, cols, a, se = list(state.row_ids), list(state.col_ids), state.payoff, se_old
    if player == "row":
        gain = float(new @ state.sigma_col) - state.value
        var = float((state.sigma_col ** 2 * se_new ** 2).sum())
        if not member:
            rows, a, se = [*rows, new_id], np.vstack([a, new]), np.vstack([se, se_new])
    else:
        gain = state.value - float(state.sigma_row @ new)
        var = float((state.sigma_row ** 2 * se_new ** 2).sum())
        if not member:
            cols, a, se = [*cols, new_id], np.column_stack([a, new]), np.column_stack([se, se_new])
    sol = solve(a, solver)
    record = {
        "player": player, "id": new_id, "answers": dict(zip(others, map(float, state.sigma_col if player == "row"
                                                                          else state.sigma_row), strict=True)),
        "exploitability": gain, "exploitability_stderr": float(np.sqrt(var + var_v)),
        "value_before": float(state.value), "value": float(sol.value), "solver": sol.solver,
        "sigma_row": dict(zip(rows, map(float, sol.row), strict=True)),
        "sigma_col": dict(zip(cols, map(float, sol.col), strict=True)),
        "evaluations": len(cells), "already_member": member,
    }
    closed = DOState(rows, cols, a, sol.row, sol.col, float(sol.value), iteration=state.iteration,
                     converged=state.converged, history=state.history, closing=record)
    return closed, (se if payoff_stderr is not None or stderr is not None else None), record
