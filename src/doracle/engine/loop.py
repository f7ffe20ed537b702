"""The double-oracle loop for games that run in one process (matrix games, tests, sweeps)."""

from __future__ import annotations

from collections.abc import Callable

from doracle.engine.game import OracleGame
from doracle.engine.solvers import solve
from doracle.engine.state import (
    DOState,
    advance,
    cells_to_evaluate,
    close,
    extend_payoff,
    initial_state,
)


def run_double_oracle(
    game: OracleGame,
    *,
    iterations: int,
    tolerance: float = 1e-9,
    solver: str = "lp",
    pruners: list[str] | None = None,
    prune_options: dict | None = None,
    callback: Callable[[DOState], None] | None = None,
    closing: str | None = None,
) -> DOState:
    """Run up to ``iterations`` DO iterations; stop early once the DO gap is <= ``tolerance``.

    ``closing`` (``"row"`` or ``"col"``): then one closing best response of that player to the other
    player's final meta-strategy (:func:`~doracle.engine.state.close`); the returned state's
    ``closing`` holds the deployed mixture's exploitability."""
    if iterations < 1:
        raise ValueError("iterations must be >= 1")
    opts = {"solver": solver, **(prune_options or {})}
    r0, c0 = game.initial_strategies()
    state = initial_state(r0, c0, game.payoff(r0, c0))
    for _ in range(iterations):
        new_row = game.best_response_row(state.col_ids, state.sigma_col)
        new_col = game.best_response_col(state.row_ids, state.sigma_row)
        cells = cells_to_evaluate(state.row_ids, state.col_ids, new_row, new_col)
        values = {cell: game.payoff(*cell) for cell in cells}
        rows, cols, a = extend_payoff(state, new_row, new_col, values)
        sol = solve(a, solver)
        state = advance(state, rows, cols, a, new_row, new_col, sol, tolerance=tolerance,
                        pruners=pruners or [], prune_options=opts, evaluations=len(cells))
        if callback:
            callback(state)
        if state.converged:
            break
    if closing is not None:
        if closing == "row":
            new = game.best_response_row(state.col_ids, state.sigma_col)
            cells = [] if new in state.row_ids else [(new, c) for c in state.col_ids]
        else:
            new = game.best_response_col(state.row_ids, state.sigma_row)
            cells = [] if new in state.col_ids else [(r, new) for r in state.row_ids]
        state = close(state, closing, new, {c: game.payoff(*c) for c in cells}, solver=solver)[0]
    return state
