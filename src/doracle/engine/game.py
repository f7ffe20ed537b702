"""The game protocol the double-oracle loop runs on, and an exact matrix game.

A game supplies strategy ids, the two best-response oracles and a payoff evaluator. The engine
never looks inside a strategy: ids are opaque strings (artifact ids in the neural games).
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np

from doracle.engine.solvers import check_payoff_matrix


class OracleGame(abc.ABC):
    """A two-player zero-sum game; the row player maximises ``payoff``."""

    @abc.abstractmethod
    def initial_strategies(self) -> tuple[str, str]:
        """One row and one column strategy to start the populations with."""

    @abc.abstractmethod
    def best_response_row(self, col_ids: Sequence[str], sigma_col: np.ndarray) -> str:
        """A row strategy (new or existing id) that best responds to the column mixture."""

    @abc.abstractmethod
    def best_response_col(self, row_ids: Sequence[str], sigma_row: np.ndarray) -> str:
        """A column strategy that best responds to the row mixture."""

    @abc.abstractmethod
    def payoff(self, row_id: str, col_id: str) -> float:
        """The row player's payoff for the pure pair (row_id, col_id)."""


class MatrixGame(OracleGame):
    """A finite zero-sum game given by its full payoff matrix; its oracles are exact.

    Strategy ids are ``"r<i>"`` and ``"c<j>"``. ``evaluations`` counts calls of :meth:`payoff`,
    so tests can check that the double oracle evaluates only new cells.
    """

    def __init__(self, matrix, start: tuple[int, int] = (0, 0)) -> None:
        self.matrix = check_payoff_matrix(matrix)
        self.start = start
        self.evaluations = 0

    @staticmethod
    def _index(sid: str) -> int:
        return int(sid[1:])

    def initial_strategies(self) -> tuple[str, str]:
        return f"r{self.start[0]}", f"c{self.start[1]}"

    def best_response_row(self, col_ids, sigma_col) -> str:
        cols = [self._index(c) for c in col_ids]
        return f"r{int(np.argmax(self.matrix[:, cols] @ sigma_col))}"

    def best_response_col(self, row_ids, sigma_row) -> str:
        rows = [self._index(r) for r in row_ids]
        return f"c{int(np.argmin(sigma_row @ self.matrix[rows, :]))}"

    def payoff(self, row_id: str, col_id: str) -> float:
        self.evaluations += 1
        return float(self.matrix[self._index(row_id), self._index(col_id)])
