"""Engine benchmark: LP meta-solve time and DO payoff-evaluation counts.

    python bench/bench_engine.py

Prints the exact LP solve time of random 100x100 and 500x500 zero-sum games (target: 500x500 in
< 0.5 s) as a ratio to a dense 500x500 linear solve timed in the same run (a machine-speed
reference), and the payoff evaluations per iteration of a 30-iteration double-oracle run against
the cells a full re-evaluation of the grown matrix would need.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.linalg

from doracle.engine import MatrixGame, run_double_oracle, solve


def best_of(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    rng = np.random.default_rng(0)
    m = rng.normal(size=(500, 500))
    b = rng.normal(size=500)
    ref = best_of(lambda: scipy.linalg.solve(m, b))
    print(f"reference: dense 500x500 linear solve {ref * 1e3:.2f} ms")
    for n in (100, 500):
        a = rng.uniform(-1, 1, size=(n, n))
        t = best_of(lambda a=a: solve(a, "lp"), repeat=3)
        verdict = "" if n != 500 else f"  target < 0.5 s: {'PASS' if t < 0.5 else 'FAIL'}"
        print(f"LP {n}x{n}: {t:.3f} s  ({t / ref:.0f}x the reference){verdict}")

    a = rng.uniform(-1, 1, size=(200, 200))
    game = MatrixGame(a)
    st = run_double_oracle(game, iterations=30, tolerance=0.0)
    print("\nDO on a random 200x200 game, 30 iterations (exact oracles):")
    print(f"{'it':>3} {'population':>10} {'evaluated':>9} {'full re-eval':>12}")
    rows, cols = 1, 1
    for h in st.history:
        full = (rows + 1) * (cols + 1)
        print(f"{h['iteration']:>3} {rows:>4}x{cols:<5} {h['evaluations']:>9} {full:>12}")
        rows, cols = h["population_row"], h["population_col"]
    total = sum(h["evaluations"] for h in st.history)
    print(f"total payoff evaluations {total + 1} vs {sum((h['population_row']) * h['population_col'] for h in st.history)} "
          f"for full re-evaluation each iteration; ratio {(total + 1) / game.matrix.size:.3f} of the full 200x200 matrix")


if __name__ == "__main__":
    main()
