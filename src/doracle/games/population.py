"""The double-oracle population state on disk, and the two light jobs (LP solve, pruning).

Torch-free on purpose: the solve and prune jobs start in about a second. The population file
(``population.json``) holds the engine's :class:`~doracle.engine.DOState` plus every strategy's
artifact path and sha256, the payoff standard errors and sample count.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from doracle import artifacts, runtime
from doracle.artifacts import read_json, sha256_file, write_json
from doracle.config import Params
from doracle.engine import (
    DOState,
    MetaSolution,
    advance,
    cells_to_evaluate,
    close,
    extend_payoff,
    gap_record,
    solve,
)
from doracle.errors import ArtifactError
from doracle.games.graph import stage_params


def _strategy(path: str | Path, player: str, **extra) -> dict:
    return {"path": str(path), "sha256": sha256_file(path), "player": player, **extra}


#: the keys every population file holds (:func:`_population_doc`)
POPULATION_KEYS = ("state", "payoff_stderr", "payoff_n", "strategies", "all_strategies")


def read_population(path: str | Path) -> tuple[DOState, dict]:
    doc = read_json(path)
    if doc.get("kind") != "population":
        raise ArtifactError(f"{path}: not a double-oracle population file")
    artifacts.require(path, doc, "population", POPULATION_KEYS)
    if not isinstance(doc["state"], dict):
        raise ArtifactError(f"{path}: its state is not a JSON object")
    try:
        return DOState.from_json(doc["state"]), doc
    except ArtifactError as exc:
        raise ArtifactError(f"{path}: {exc}") from None


def best_member(state: DOState, player: str = "row") -> str:
    """The row player's member with the highest worst-case payoff over the column population
    (payoff split, never the test split), or (``player="col"``) the column player's member with the
    lowest worst-case payoff over the rows; ties go to the higher meta-strategy probability."""
    if player == "row":
        worst = state.payoff.min(axis=1)
        k = max(range(len(state.row_ids)), key=lambda r: (worst[r], state.sigma_row[r]))
        return state.row_ids[k]
    worst = state.payoff.max(axis=0)
    k = max(range(len(state.col_ids)), key=lambda c: (-worst[c], state.sigma_col[c]))
    return state.col_ids[k]


def support(state: DOState, player: str) -> tuple[list[str], list[float]]:
    """(ids, probabilities) of a player's members with positive meta-strategy probability."""
    ids, sigma = (state.row_ids, state.sigma_row) if player == "row" else (state.col_ids, state.sigma_col)
    keep = [(i, float(p)) for i, p in zip(ids, sigma, strict=True) if p > 1e-9]
    return [i for i, _ in keep], [p for _, p in keep]


def checked_ref(doc: dict, sid: str) -> dict:
    """A strategy's artifact reference, its file checked against the sha256 the population recorded."""
    ref = doc["strategies"][sid]
    artifacts.check_sha256(ref["path"], ref["sha256"], f"since the population recorded it (strategy {sid})")
    return ref


def skip_artifact(out: str, reason: str, params: Params, stage: str) -> None:
    """The pass-through artifact a best response writes once DO has converged."""
    artifacts.save_tensors(out, {}, artifacts.metadata("skipped", experiment=params.experiment,
                                                       params=stage_params(params, stage), seed=None,
                                                       skipped=True, reason=reason))


def payoff_job(params: Params, game, state_path: str, iteration: int, row: str, col: str, out: str,
               cells, inputs: list[str]) -> dict:
    """Extend the payoff matrix by the new row and column only (known cells are reused), for any
    game. ``cells(doc, cells)`` evaluates the cells ``[(row_id, col_id), ...]`` with ``doc``'s
    strategies (the new ones included) and returns ``(values, stderrs, n, compute)``: dicts keyed
    by cell, the examples behind each cell, the compute record."""
    state, doc = read_population(state_path)
    new_row, new_col = game.strategy_id(game.players[0], iteration), game.strategy_id(game.players[1], iteration)
    base = {"kind": "payoff", "experiment": params.experiment, "iteration": iteration, "params": stage_params(params, "payoff")}
    if state.converged:
        result = {**base, "skipped": True, "row_ids": state.row_ids, "col_ids": state.col_ids,
                  "payoff": state.payoff.tolist(), "stderr": doc["payoff_stderr"], "n": doc["payoff_n"],
                  "cells_evaluated": 0, "strategies": doc["all_strategies"]}
        write_json(out, result)
        return result
    strategies = dict(doc["all_strategies"])
    strategies[new_row] = _strategy(row, game.players[0], iteration=iteration)
    strategies[new_col] = _strategy(col, game.players[1], iteration=iteration)
    todo = cells_to_evaluate(state.row_ids, state.col_ids, new_row, new_col)
    values, errs, n, cost = cells({**doc, "strategies": strategies}, todo)
    rows, cols, a = extend_payoff(state, new_row, new_col, values)
    se_state = DOState(state.row_ids, state.col_ids, np.asarray(doc["payoff_stderr"]), state.sigma_row,
                       state.sigma_col, state.value)
    _, _, se = extend_payoff(se_state, new_row, new_col, errs)
    result = {**base, "skipped": False, "row_ids": rows, "col_ids": cols, "payoff": a.tolist(),
              "stderr": se.tolist(), "n": int(n), "cells_evaluated": len(todo),
              "new_row": new_row, "new_col": new_col, "strategies": strategies, "compute": cost,
              "inputs": artifacts.inputs_record((*inputs, state_path, row, col))}
    write_json(out, result)
    return result


def close_job(params: Params, game, state_path: str, model_out: str, out: str, respond, cells,
              inputs: list[str]) -> dict:
    """The closing step of any game (:func:`doracle.engine.close`): the opponent of the deployed
    player (``game.deployed``) answers the deployed player's final meta-strategy, its row or column
    joins the payoff matrix, and the meta-game is solved once more (``do.meta_solver``, no pruning).

    ``respond(state, doc, sid, model_out)`` trains the closing strategy ``sid`` against that
    meta-strategy and saves it to ``model_out`` (its sidecar records its compute); ``cells(doc, cells)`` is the
    payoff job's (:func:`payoff_job`). Writes the closed population to ``out``: what the
    evaluation, metrics and report jobs read. Runs whether or not DO converged."""
    state, doc = read_population(state_path)
    if state.closing is not None:
        raise ArtifactError(f"{state_path}: this population is already closed (by {state.closing['id']})")
    player = game.closing_player
    side = "row" if player == game.players[0] else "col"
    sid = game.strategy_id(player, state.iteration + 1)
    respond(state, doc, sid, model_out)
    strategies = {**doc["all_strategies"], sid: _strategy(model_out, player, closing=True)}
    todo = [(sid, c) for c in state.col_ids] if side == "row" else [(r, sid) for r in state.row_ids]
    values, errs, n, cost = cells({**doc, "strategies": {**doc["strategies"], sid: strategies[sid]}}, todo)
    closed, se, record = close(state, side, sid, values, solver=params.do.meta_solver, stderr=errs,
                               payoff_stderr=np.asarray(doc["payoff_stderr"], dtype=float))
    closed.closing = {**record, "player_name": player, "deployed": game.deployed}
    newdoc = _population_doc(params, closed, se, n, strategies, runtime.derive_seed(params.seed, "closing"),
                             stage="closing")
    newdoc["inputs"] = artifacts.inputs_record((*inputs, state_path, model_out))
    newdoc["closed_from"] = state_path
    newdoc["compute"] = cost  # the closing response's own compute is in its sidecar
    write_json(out, newdoc)
    return newdoc


def sigma_stability(state: DOState, stderr, *, seed: int, resamples: int = 200) -> dict:
    """How much of the deployed meta-strategy is signal: the LP re-solved on ``resamples`` payoff
    matrices drawn cell by cell from Normal(value, its standard error) (a parametric bootstrap of the
    payoff split's sampling noise; seeded). Per strategy of each player: sigma, the 2.5 / 97.5 %
    quantiles of its resampled probability, and the share of resamples whose support holds it."""

    a, se = np.asarray(state.payoff, dtype=float), np.asarray(stderr, dtype=float)
    rng = np.random.default_rng(seed)
    draws = [solve(a + rng.standard_normal(a.shape) * se) for _ in range(resamples)]
    out = {}
    for player, ids, sigma, key in (("row", state.row_ids, state.sigma_row, "row"),
                                    ("col", state.col_ids, state.sigma_col, "col")):
        probs = np.array([getattr(d, key) for d in draws])
        out[player] = {sid: {"sigma": float(sigma[k]), "interval": [float(np.quantile(probs[:, k], 0.025)),
                                                                   float(np.quantile(probs[:, k], 0.975))],
                             "in_support": float((probs[:, k] > 1e-9).mean())}
                       for k, sid in enumerate(ids)}
    return {"method": "parametric bootstrap: cells ~ Normal(value, stderr), LP re-solved", "resamples": resamples,
            "seed": seed, **out}


def double_oracle_summary(state: DOState, tolerance: float, stderr=None, seed: int = 0) -> dict:
    """The ``double_oracle`` object of every game's metrics.json: how the run ended, the closing
    best response's exploitability of the deployed mixture (None for a population not closed), and
    with the payoff's ``stderr`` the meta-strategy's stability (:func:`sigma_stability`)."""
    hist = state.history
    c = state.closing or {}
    return {
        **({"sigma_stability": sigma_stability(state, stderr, seed=seed)} if stderr is not None else {}),
        "exploitability": c.get("exploitability"), "exploitability_stderr": c.get("exploitability_stderr"),
        "closing": {k: c[k] for k in ("id", "player_name", "deployed", "value_before", "value", "answers")
                    if k in c} or None,
        "iterations_run": len(hist), "converged": bool(state.converged),
        # converged | within_noise (gap <= tolerance, its upper bound is not) | not_converged
        "status": hist[-1]["status"] if hist else "not_converged",
        "final_gap": float(hist[-1]["gap"]) if hist else None,
        "final_gap_stderr": float(hist[-1]["gap_stderr"]) if hist else None,
        "final_gap_upper": float(hist[-1]["gap_upper"]) if hist else None,
        "support_size": int((state.sigma_row > 1e-9).sum()), "value": float(state.value),
        "support_size_col": int((state.sigma_col > 1e-9).sum()),  # support_size: the row player's
        "gap_history": [float(h["gap"]) for h in hist], "tolerance": tolerance,
    }


def _population_doc(params, state: DOState, stderr, n, strategies: dict, seed, stage: str = "prune") -> dict:
    return {
        "kind": "population", "experiment": params.experiment, "game": params.game, "seed": seed,
        "params": stage_params(params, stage),
        "state": state.to_json(), "payoff_stderr": np.asarray(stderr).tolist(), "payoff_n": n,
        "strategies": {s: strategies[s] for s in state.row_ids + state.col_ids},
        "all_strategies": strategies,
    }


def solve_meta(params: Params, state_path: str, payoff_path: str, out: str) -> dict:
    state, _ = read_population(state_path)
    pay = artifacts.require(payoff_path, read_json(payoff_path), "payoff", ("iteration", "payoff", "row_ids", "col_ids"))
    base = {"kind": "meta", "experiment": params.experiment, "iteration": pay["iteration"], "params": stage_params(params, "solve")}
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
           **gap, "inputs": artifacts.inputs_record((state_path, payoff_path))}
    write_json(out, doc)
    return doc


def prune(params: Params, state_path: str, payoff_path: str, meta_path: str, out: str) -> dict:
    state, doc = read_population(state_path)
    pay = artifacts.require(payoff_path, read_json(payoff_path), "payoff", ("iteration", "payoff", "row_ids", "col_ids"))
    meta = artifacts.require(meta_path, read_json(meta_path), "meta", ("solution",))
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
    newdoc["inputs"] = artifacts.inputs_record((state_path, payoff_path, meta_path))
    write_json(out, newdoc)
    return newdoc
