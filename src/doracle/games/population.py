"""The double-oracle population state on disk, and the two light jobs (LP solve, pruning).

Torch-free on purpose: the solve and prune jobs start in about a second. The population file
(``population.json``) holds the engine's :class:`~doracle.engine.DOState` plus every strategy's
artifact path and sha256, the payoff standard errors and sample count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from doracle import runtime
from doracle.artifacts import read_json, sha256_file, write_json
from doracle.config import Params
from doracle.engine import DOState, MetaSolution, advance, gap_record, solve
from doracle.errors import ArtifactError
from doracle.pipeline import stage_params


def _strategy(path: str | Path, player: str, **extra) -> dict:
    return {"path": str(path), "sha256": sha256_file(path), "player": player, **extra}


def read_population(path: str | Path) -> tuple[DOState, dict]:
    doc = read_json(path)
    if doc.get("kind") != "population":
        raise ArtifactError(f"{path}: not a double-oracle population file")
    return DOState.from_json(doc["state"]), doc


def best_member(state: DOState) -> str:
    """The defender with the highest worst-case payoff over the attacker population (payoff split,
    never the test split); ties go to the higher meta-strategy probability."""
    worst = state.payoff.min(axis=1)
    k = max(range(len(state.row_ids)), key=lambda r: (worst[r], state.sigma_row[r]))
    return state.row_ids[k]


def _population_doc(params, state: DOState, stderr, n, strategies: dict, seed) -> dict:
    return {
        "kind": "population", "experiment": params.experiment, "seed": seed,
        "params": stage_params(params, "prune"),
        "state": state.to_json(), "payoff_stderr": np.asarray(stderr).tolist(), "payoff_n": n,
        "strategies": {s: strategies[s] for s in state.row_ids + state.col_ids},
        "all_strategies": strategies,
    }


def solve_meta(params: Params, state_path: str, payoff_path: str, out: str) -> dict:
    state, _ = read_population(state_path)
    pay = read_json(payoff_path)
    base = {"kind": "meta", "iteration": pay["iteration"], "params": stage_params(params, "solve")}
    if pay.get("skipped"):
        doc = {**base, "skipped": True, "solution": {"row": state.sigma_row.tolist(), "col": state.sigma_col.tolist(),
                                                     "value": state.value, "solver": params.do.meta_solver}}
        write_json(out, doc)
        return doc
    a = np.asarray(pay["payoff"], dtype=float)
    sol = solve(a, params.do.meta_solver)
    gap = gap_record(state, pay["row_ids"], pay["col_ids"], a, pay["new_row"], pay["new_col"],
                     tolerance=params.do.tolerance, stderr=np.asarray(pay["stderr"], dtype=float))
    doc = {**base, "skipped": False, "row_ids": pay["row_ids"], "col_ids": pay["col_ids"], "solution": sol.to_json(),
           **gap, "inputs": {p: sha256_file(p) for p in (state_path, payoff_path)}}
    write_json(out, doc)
    return doc


def prune(params: Params, state_path: str, payoff_path: str, meta_path: str, out: str) -> dict:
    state, doc = read_population(state_path)
    pay, meta = read_json(payoff_path), read_json(meta_path)
    iteration = int(pay["iteration"])
    if pay.get("skipped"):
        new = DOState(state.row_ids, state.col_ids, state.payoff, state.sigma_row, state.sigma_col, state.value,
                      iteration=iteration, converged=True, history=state.history)
        newdoc = {**doc, "state": new.to_json(), "passed_through": doc.get("passed_through", []) + [iteration]}
        write_json(out, newdoc)
        return newdoc
    a = np.asarray(pay["payoff"], dtype=float)
    s = meta["solution"]
    sol = MetaSolution(np.asarray(s["row"]), np.asarray(s["col"]), float(s["value"]), s["solver"], s["exact"])
    cfg = params.do
    new = advance(state, pay["row_ids"], pay["col_ids"], a, pay["new_row"], pay["new_col"], sol,
                  tolerance=cfg.tolerance, pruners=list(cfg.pruners),
                  prune_options={"solver": cfg.meta_solver, "capacity": cfg.capacity, "tol": cfg.dominance_tolerance},
                  evaluations=int(pay["cells_evaluated"]), stderr=np.asarray(pay["stderr"], dtype=float))
    if new.iteration != iteration:
        raise ArtifactError(f"{state_path} is iteration {state.iteration}, {payoff_path} is iteration {iteration}")
    se = np.asarray(pay["stderr"])
    ri = [pay["row_ids"].index(r) for r in new.row_ids]
    ci = [pay["col_ids"].index(c) for c in new.col_ids]
    newdoc = _population_doc(params, new, se[np.ix_(ri, ci)], pay["n"], pay["strategies"],
                             runtime.derive_seed(params.seed, "prune", iteration))
    newdoc["inputs"] = {p: sha256_file(p) for p in (state_path, payoff_path, meta_path)}
    write_json(out, newdoc)
    return newdoc
