"""The job graph of an experiment: every job with its command, inputs, outputs and the params it
reads, derived from the experiment's game (:mod:`doracle.games`). The pipeline adapters
(:mod:`doracle.pipeline`: Snakemake rules, DVC stages) read it, and so do the jobs that account
for the work upstream of a model (:func:`lineage`, :func:`model_cost`: the methods table's
compute, the matched baselines' budgets). Torch-free.
"""

from __future__ import annotations

from types import SimpleNamespace

from doracle import compute, jobtable
from doracle.config import DEFAULT_PARAMS as PARAMS_FILE
from doracle.config import Params
from doracle.games import game_of
from doracle.paths import bench_path, log_path

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


def job_stages(rule: str, wildcards: dict) -> tuple[str, ...]:
    """The stages (keys of COMMON_STAGE_PARAMS or Game.stage_params) a job reads."""
    return jobtable.SHAPES[rule].stages(wildcards)


def jobs(params: Params, params_file: str = PARAMS_FILE) -> list[dict]:
    """Every job of the experiment with concrete inputs, outputs, log and command: each job shape
    of :mod:`doracle.jobtable` expanded for the experiment's game (``params.game``), which decides
    which models are trained outside the loop, who the players are and what is evaluated. In the
    order of the shapes' phases, iterations, then the table."""
    ctx = jobtable.Context(params, game_of(params))
    out: list[tuple[tuple, dict]] = []
    for index, shape in enumerate(jobtable.SHAPES.values()):
        for job in shape.expand(ctx):
            outputs = shape.outputs_of(params.experiment, job.wildcards)
            first = next(iter(outputs.values()))
            log = log_path(first)
            extra = {"file": params_file, **job.params}
            ns = {"input": SimpleNamespace(**job.inputs), "output": SimpleNamespace(**outputs),
                  "wildcards": SimpleNamespace(**job.wildcards), "log": log, "params": SimpleNamespace(**extra)}
            key = (shape.phase, job.wildcards.get("it", ""), index)
            out.append((key, {"rule": shape.rule, "name": job.name, "cmd": shape.cmd.format(**ns),
                              "inputs": dict(job.inputs), "outputs": outputs, "log": log,
                              "benchmark": bench_path(first), "stages": shape.stages(job.wildcards),
                              "wildcards": dict(job.wildcards), "params": extra}))
    ordered = [job for _, job in sorted(out, key=lambda kj: kj[0])]
    _declare_upstream(ordered)
    return ordered


#: the name prefix of the inputs a job declares with ``reads_upstream``: records, not work it builds on
UPSTREAM = "upstream_"


def _upstream(producer: dict[str, dict], files, follow=lambda job, key: True) -> set[str]:
    """The names of the jobs that write ``files`` and of every job upstream of them, through the
    inputs ``follow(job, input_name)`` lets through."""
    todo, seen = list(files), set()
    while todo:
        job = producer.get(todo.pop())
        if job is not None and job["name"] not in seen:
            seen.add(job["name"])
            todo.extend(v for k, v in job["inputs"].items() if follow(job, k))
    return seen


def _declare_upstream(jobs_: list[dict]) -> None:
    """Give each job of a shape that ``reads_upstream`` the JSON outputs of every job upstream of
    its inputs as inputs ``upstream_<k>`` (in pipeline order; data preparation excepted)."""
    producer = {o: j for j in jobs_ for o in j["outputs"].values()}
    for job in jobs_:
        if not jobtable.SHAPES[job["rule"]].reads_upstream:
            continue
        seen, declared = _upstream(producer, job["inputs"].values()), set(job["inputs"].values())
        files = [o for up in jobs_ if up["name"] in seen and up["rule"] not in compute.SHARED_JOBS
                 for o in up["outputs"].values() if o.endswith(".json") and o not in declared]
        job["inputs"].update({f"{UPSTREAM}{k}": f for k, f in enumerate(dict.fromkeys(files))})


#: (rule, input) pairs read only to copy a count: a matched baseline reads the closed DO population
#: for the DO run's epochs and passes, and none of that run's work is its own
COUNT_ONLY_INPUTS = {("train_baseline", "population")}


def lineage(params: Params, output: str) -> list[dict]:
    """Every job upstream of ``output`` (the job that writes it included), in pipeline order; an
    input read only for its counts (:data:`COUNT_ONLY_INPUTS`, and the records a job declares with
    ``reads_upstream``) is not followed."""
    all_jobs = jobs(params)
    producer = {o: j for j in all_jobs for o in j["outputs"].values()}
    seen = _upstream(producer, [output], lambda job, k: (job["rule"], k) not in COUNT_ONLY_INPUTS
                     and not k.startswith(UPSTREAM))
    return [j for j in all_jobs if j["name"] in seen]


def model_cost(params: Params, output: str) -> dict:
    """The total compute of the model written at ``output``: every job upstream of it (data
    preparation excepted), as wall seconds and as network passes, both recorded by the jobs themselves
    (:func:`doracle.compute.jobs_cost`; whether Snakemake or ``dvc repro`` ran them)."""
    return compute.jobs_cost(lineage(params, output))
