"""``doracle solve-game`` and ``doracle do-demo``: the engine on plain matrix games."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np

from doracle.engine import META_SOLVERS, PRUNERS, MatrixGame, run_double_oracle, solve
from doracle.errors import DoracleError


def read_matrix_csv(path: str | Path) -> np.ndarray:
    """Read a payoff matrix from CSV (no header, row player maximises), rejecting bad input: a missing
    or empty file, ragged rows, cells that are not finite numbers (named by line and column), a
    constant matrix, payoffs too large to solve."""
    p = Path(path)
    if not p.is_file():
        raise DoracleError(f"{p}: no such file")
    try:
        with p.open(newline="") as fh:
            rows = [r for r in csv.reader(fh) if any(cell.strip() for cell in r)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DoracleError(f"{p}: cannot read the payoff CSV ({type(exc).__name__}: {exc})") from None
    if not rows:
        raise DoracleError(f"{p}: empty payoff matrix")
    width = len(rows[0])
    out = []
    for i, r in enumerate(rows, start=1):
        if len(r) != width:
            raise DoracleError(f"{p}: ragged CSV: line {i} has {len(r)} cells, line 1 has {width}")
        vals = []
        for j, cell in enumerate(r, start=1):
            try:
                v = float(cell)
            except ValueError:
                raise DoracleError(f"{p}: line {i}, column {j}: {cell.strip()!r} is not a number") from None
            if not math.isfinite(v):
                raise DoracleError(f"{p}: line {i}, column {j}: {cell.strip()!r} is not finite")
            vals.append(v)
        out.append(vals)
    a = np.array(out)
    if a.size > 1 and np.ptp(a) == 0:
        raise DoracleError(f"{p}: every payoff is {a.flat[0]:g}: a constant game carries no information (every "
                           f"strategy pair is an equilibrium, of value {a.flat[0]:g}), so there is nothing to solve")
    big = float(np.abs(a).max())
    if big > 1e300:
        raise DoracleError(f"{p}: a payoff of magnitude {big:g} is too large (expected payoffs would overflow): "
                           "rescale the payoffs")
    return a


def cmd_solve_game(args) -> int:
    a = read_matrix_csv(args.file)
    sol = solve(a, args.solver)
    print(json.dumps(sol.to_json()))
    return 0


def cmd_do_demo(args) -> int:
    if args.file:
        a = read_matrix_csv(args.file)
    else:
        a = np.random.default_rng(args.seed).uniform(-1, 1, size=(args.size, args.size))
    game = MatrixGame(a)

    print(f"{'it':>3} {'value':>10} {'gap':>10} {'support':>8} {'population':>10} {'evals':>5}")

    def show(st):
        h = st.history[-1]
        print(f"{h['iteration']:>3} {h['value']:>10.6f} {h['gap']:>10.3g} "
              f"{h['support_row']:>3}x{h['support_col']:<4} {h['population_row']:>4}x{h['population_col']:<5} "
              f"{h['evaluations']:>5}")

    st = run_double_oracle(game, iterations=args.iterations, tolerance=args.tolerance, solver=args.solver,
                           pruners=args.prune, prune_options={"capacity": args.capacity}, callback=show)
    full = solve(a, "lp").value
    print(json.dumps({"iterations": st.iteration, "converged": st.converged, "value": st.value,
                      "full_game_value": full, "payoff_evaluations": game.evaluations,
                      "matrix_size": list(a.shape)}))
    return 0


def register(sub) -> None:
    p = sub.add_parser("solve-game", help="solve a zero-sum matrix game given as CSV",
                       description="Solve a two-player zero-sum game. FILE is a CSV payoff matrix "
                                   "(no header; the row player maximises). Prints one JSON object "
                                   "with keys row, col, value, solver.")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--solver", default="lp", help=f"meta-solver: {', '.join(META_SOLVERS.names())} (default: lp)")
    p.set_defaults(handler=cmd_solve_game)

    d = sub.add_parser("do-demo", help="run the double-oracle loop on a matrix game",
                       description="Run double oracle with exact best responses on a matrix game "
                                   "(a CSV file, or a random game) and print gap and support per iteration.")
    d.add_argument("file", nargs="?", metavar="FILE", help="CSV payoff matrix (default: random game)")
    d.add_argument("--size", type=int, default=50, help="random game size (default: 50)")
    d.add_argument("--seed", type=int, default=0, help="random game seed (default: 0)")
    d.add_argument("--iterations", type=int, default=100)
    d.add_argument("--tolerance", type=float, default=1e-9)
    d.add_argument("--solver", default="lp", help=f"one of {', '.join(META_SOLVERS.names())}")
    d.add_argument("--prune", action="append", default=[], metavar="NAME",
                   help=f"pruner to apply each iteration (repeatable): {', '.join(PRUNERS.names())}")
    d.add_argument("--capacity", type=int, default=10, help="population capacity for the capacity pruner")
    d.set_defaults(handler=cmd_do_demo)
