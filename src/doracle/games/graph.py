"""The job graph of an experiment: every job with its command, inputs, outputs and the params it
reads, derived from the experiment's game (:mod:`doracle.games`). The pipeline adapters
(:mod:`doracle.pipeline`: Snakemake rules, DVC stages) read it, and so do the jobs that account
for the work upstream of a model (:func:`lineage`, :func:`model_cost`: the methods table's
compute, the matched baselines' budgets). Torch-free.
"""

from __future__ import annotations

from types import SimpleNamespace

from doracle import compute
from doracle.config import DEFAULT_PARAMS as PARAMS_FILE
from doracle.config import Params
from doracle.games import game_of
from doracle.paths import PATTERNS, bench_path, it3, log_path, sidecar, state_path

# The params the game-independent stages read (the games declare theirs: Game.stage_params).
# Every job's metadata records them, DVC tracks them, Snakemake reruns a job when they change.
COMMON_STAGE_PARAMS = {
    "data": ("seed", "data"),
    "solve": ("do.meta_solver", "do.tolerance"),
    "prune": ("do.meta_solver", "do.tolerance", "do.pruners", "do.capacity", "do.dominance_tolerance"),
}


def stage_keys(params: Params, *stages: str) -> list[str]:
    """The dotted params keys ``stages`` read (common stages without importing the game: torch-free)."""
    keys: list[str] = []
    for s in stages:
        if s in COMMON_STAGE_PARAMS:
            keys += COMMON_STAGE_PARAMS[s]
        else:
            keys += game_of(params).stage_keys(params, s)
    return list(dict.fromkeys(keys))


def stage_params(params: Params, *stages: str) -> dict:
    return params.stage(*stage_keys(params, *stages))


COMMANDS = {
    "prepare_data": "doracle data --params {params.file} --out {output.data} --log {log}",
    "train": ("doracle train --params {params.file} --role {wildcards.role} --data {input.data} --out {output.model} "
              "--log {log}"),
    "train_baseline": ("doracle train --params {params.file} --role baseline --method {wildcards.method} "
                       "--data {input.data}{params.uses} --out {output.model} --log {log}"),
    "do_init": ("doracle do init --params {params.file} --data {input.data}{params.uses} "
                "--init-out {output.init} --out {output.population} --log {log}"),
    "best_response": ("doracle do best-response --player {wildcards.player} --params {params.file} "
                      "--data {input.data} --state {input.state} --iteration {wildcards.it} "
                      "--out {output.model} --log {log}"),
    "payoff": ("doracle do payoff --params {params.file} --data {input.data} --state {input.state} "
               "--iteration {wildcards.it} --row {input.row} --col {input.col} --out {output.payoff} --log {log}"),
    "solve": ("doracle do solve --params {params.file} --state {input.state} --payoff {input.payoff} "
              "--out {output.meta} --log {log}"),
    "prune": ("doracle do prune --params {params.file} --state {input.state} --payoff {input.payoff} "
              "--meta {input.meta} --out {output.population} --log {log}"),
    "close": ("doracle do close --params {params.file} --data {input.data} --state {input.state} "
              "--model-out {output.model} --out {output.population} --log {log}"),
    "evaluate_do": ("doracle evaluate --params {params.file} --data {input.data} --model {wildcards.target} "
                    "--population {input.population}{params.uses} --state {params.state} --out {output.evaluation} "
                    "--log {log}"),
    "evaluate_baseline": ("doracle evaluate --params {params.file} --data {input.data} --model {wildcards.method} "
                          "--checkpoint {input.model}{params.uses} --state {params.state} --out {output.evaluation} "
                          "--log {log}"),
    "metrics": ("doracle metrics --params {params.file} --population {input.population} "
                "--evaluation {params.evaluations} --out {output.metrics} --headline {output.headline} --log {log}"),
    "report": ("doracle report --params {params.file} --metrics {input.metrics} --population {input.population} "
               "--payoff {input.payoff} --out {output.report} --log {log}"),
}

def job_stages(rule: str, wildcards: dict) -> tuple[str, ...]:
    """The stages (keys of COMMON_STAGE_PARAMS or Game.stage_params) a job reads."""
    return {
        "prepare_data": ("data",),
        "train": ("train", wildcards.get("role", "")),
        "train_baseline": ("train", "baseline"),
        "do_init": ("init",),
        "best_response": (f"best_response_{wildcards.get('player')}",),
        "payoff": ("payoff",),
        "solve": ("solve",),
        "prune": ("prune",),
        "close": ("closing",),
        "evaluate_do": ("evaluate",),
        "evaluate_baseline": ("evaluate",),
        "metrics": ("metrics",),
        "report": ("report",),
    }[rule]


def _uses(paths: dict[str, str]) -> str:
    """The ``--uses ROLE=PATH`` options of a job reading models trained outside the DO loop."""
    return "".join(f" --uses {role}={path}" for role, path in paths.items())


def jobs(params: Params, params_file: str = PARAMS_FILE) -> list[dict]:
    """Every job of the experiment with concrete inputs, outputs, log and command. The game
    (``params.game``) decides which models are trained outside the loop, who the players are,
    what is evaluated; the job shapes are the same for every game."""
    game = game_of(params)
    exp = params.experiment
    T = params.do.iterations

    def p(name, **wc):
        return PATTERNS[name].format(exp=exp, **wc)

    out: list[dict] = []

    def add(rule, name, inputs, outputs, wildcards=None, extra_params=None):
        wildcards = wildcards or {}
        log = log_path(next(iter(outputs.values())))
        extra = {"file": params_file, **(extra_params or {})}
        ns = {"input": SimpleNamespace(**inputs), "output": SimpleNamespace(**outputs),
              "wildcards": SimpleNamespace(**wildcards), "log": log, "params": SimpleNamespace(**extra)}
        out.append({"rule": rule, "name": name, "cmd": COMMANDS[rule].format(**ns), "inputs": inputs,
                    "outputs": outputs, "log": log, "benchmark": bench_path(next(iter(outputs.values()))),
                    "stages": job_stages(rule, wildcards), "wildcards": wildcards, "params": extra})

    data = p("data")
    add("prepare_data", "prepare_data", {}, {"data": data, "data_meta": sidecar(data)})
    trained = {}
    for role in game.train_roles(params):
        trained[role] = p("model", role=role)
        add("train", f"train_{role}", {"data": data}, {"model": trained[role], "model_meta": sidecar(trained[role])},
            {"role": role})
    baselines = {}
    for m in game.baselines(params):
        baselines[m] = p("baseline", method=m)
        uses = game.baseline_uses(params, m)
        add("train_baseline", f"train_baseline_{m}", {"data": data, **uses},
            {"model": baselines[m], "model_meta": sidecar(baselines[m])}, {"method": m}, {"uses": _uses(uses)})
    init_uses = {r: trained[r] for r in game.init_roles(params)}
    init = p("init")
    add("do_init", "do_init", {"data": data, **init_uses},
        {"population": p("population", it=it3(0)), "init": init, "init_meta": sidecar(init)},
        extra_params={"uses": _uses(init_uses)})
    row, col = game.players
    for t in range(1, T + 1):
        it, prev = it3(t), it3(t - 1)
        state = p("population", it=prev)
        new = {}
        for responder, players in game.responders(params).items():  # one job per player, or one per pair
            path = p("strategy", it=it, player=responder)
            new.update(dict.fromkeys(players, path))
            add("best_response", f"best_response_{responder}_it{it}", {"data": data, "state": state},
                {"model": path, "model_meta": sidecar(path)}, {"it": it, "player": responder})
        add("payoff", f"payoff_it{it}", {"data": data, "state": state, "row": new[row], "col": new[col]},
            {"payoff": p("payoff", it=it)}, {"it": it})
        add("solve", f"solve_it{it}", {"state": state, "payoff": p("payoff", it=it)}, {"meta": p("meta", it=it)},
            {"it": it})
        add("prune", f"prune_it{it}", {"state": state, "payoff": p("payoff", it=it), "meta": p("meta", it=it)},
            {"population": p("population", it=it)}, {"it": it})
    closing = p("closing_model")
    add("close", "close", {"data": data, "state": p("population", it=it3(T))},
        {"population": p("closed"), "model": closing, "model_meta": sidecar(closing)})
    final = p("closed")
    eval_uses = {r: trained[r] for r in game.eval_roles(params)}
    evs = []
    for t in game.targets(params):
        ev = p("evaluation_do", target=t)
        evs.append(ev)
        add("evaluate_do", f"evaluate_{t}", {"data": data, "population": final, **eval_uses}, {"evaluation": ev},
            {"target": t}, {"state": state_path(ev), "uses": _uses(eval_uses)})
    for m in game.baselines(params):
        ev = p("evaluation_baseline", method=m)
        evs.append(ev)
        add("evaluate_baseline", f"evaluate_baseline_{m}", {"data": data, "model": baselines[m], **eval_uses},
            {"evaluation": ev}, {"method": m}, {"state": state_path(ev), "uses": _uses(eval_uses)})
    add("metrics", "metrics", {"population": final, **{f"evaluation_{k}": v for k, v in enumerate(evs)}},
        {"metrics": p("metrics"), "headline": p("headline")}, extra_params={"evaluations": " ".join(evs)})
    # the report reads the evaluations too (the GAN report's sample grids, drawn by its evaluation jobs)
    add("report", "report", {"metrics": p("metrics"), "population": final, "payoff": p("payoff", it=it3(T)),
                             **{f"evaluation_{k}": v for k, v in enumerate(evs)}}, {"report": p("report")})
    return out


#: (rule, input) pairs read only to copy a count: a matched baseline reads the closed DO population
#: for the DO run's epochs and passes, and none of that run's work is its own
COUNT_ONLY_INPUTS = {("train_baseline", "population")}


def lineage(params: Params, output: str) -> list[dict]:
    """Every job upstream of ``output`` (the job that writes it included), in pipeline order; an
    input read only for its counts (:data:`COUNT_ONLY_INPUTS`) is not followed."""
    all_jobs = jobs(params)
    producer = {o: j for j in all_jobs for o in j["outputs"].values()}
    todo, seen = [output], set()
    while todo:
        job = producer.get(todo.pop())
        if job is None or job["name"] in seen:
            continue
        seen.add(job["name"])
        todo.extend(v for k, v in job["inputs"].items() if (job["rule"], k) not in COUNT_ONLY_INPUTS)
    return [j for j in all_jobs if j["name"] in seen]


def model_cost(params: Params, output: str) -> dict:
    """The total compute of the model written at ``output``: every job upstream of it (data
    preparation excepted), as wall seconds (Snakemake's benchmark files; null when any is missing,
    as after ``dvc repro``) and as network passes recorded by the jobs themselves."""
    return compute.jobs_cost(lineage(params, output))
