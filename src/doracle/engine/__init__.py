"""Game-generic double-oracle engine. Imports no game, attack, defense, model, and no torch."""

from doracle.engine.game import MatrixGame, OracleGame
from doracle.engine.loop import run_double_oracle
from doracle.engine.pruning import PRUNERS, prune
from doracle.engine.solvers import (
    META_SOLVERS,
    MetaSolution,
    check_payoff_matrix,
    exploitability,
    solve,
)
from doracle.engine.state import (
    DOState,
    advance,
    cells_to_evaluate,
    close,
    extend_payoff,
    gains,
    gap_record,
    initial_state,
)

__all__ = [
    "OracleGame", "MatrixGame", "run_double_oracle", "PRUNERS", "prune", "META_SOLVERS", "MetaSolution",
    "check_payoff_matrix", "exploitability", "solve", "DOState", "advance", "cells_to_evaluate", "close",
    "extend_payoff", "gains", "gap_record", "initial_state",
]
