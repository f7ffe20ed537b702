"""The pipeline's jobs, described once, for both Snakemake and DVC.

:data:`PATTERNS` holds every artifact path (with Snakemake wildcards ``{exp}``, ``{it}``,
``{method}``) and :data:`COMMANDS` every job's command template. The rules under
``workflow/rules/`` use both; :func:`dvc_stages` expands the same templates into concrete DVC
stages (DVC templates have no arithmetic, so the chain of iterations is written out), and
``doracle dvc-yaml`` writes them to ``dvc.yaml``. A test runs Snakemake's dry run and checks that
its jobs and the DVC stages carry the same commands, inputs and outputs.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import yaml

from doracle import artifacts
from doracle.config import Params

PARAMS_FILE = "params.yaml"

# The params each job reads: its metadata records them, DVC tracks them.
STAGE_PARAMS = {
    "data": ("seed", "data"),
    "train": ("seed", "device", "threads", "model", "training", "threat_model", "defenses"),
    "base": ("base",),
    "baseline": ("baselines",),
    "init": ("seed", "device", "threads", "threat_model", "do.attacker"),
    "best_response_defender": ("seed", "device", "threads", "model", "training", "threat_model",
                               "defenses", "do.defender"),
    "best_response_attacker": ("seed", "device", "threads", "threat_model", "do.attacker"),
    "payoff": ("device", "threads"),
    "solve": ("do.meta_solver", "do.tolerance"),
    "prune": ("do.meta_solver", "do.tolerance", "do.pruners", "do.capacity", "do.dominance_tolerance"),
    "evaluate": ("seed", "device", "threads", "threat_model", "evaluation"),
    "metrics": ("seed", "threat_model", "evaluation", "do.tolerance"),
    "report": ("experiment",),
}


def stage_params(params: Params, *stages: str) -> dict:
    keys = [k for s in stages for k in STAGE_PARAMS[s]]
    return params.stage(*dict.fromkeys(keys))

R = "results/{exp}"
PATTERNS = {
    "data": f"{R}/data/dataset.safetensors",
    "base": f"{R}/base/model.safetensors",
    "baseline": f"{R}/baselines/{{method}}/model.safetensors",
    "init_attacker": f"{R}/do/it000/attacker.safetensors",
    "population": f"{R}/do/it{{it}}/population.json",
    "defender": f"{R}/do/it{{it}}/defender.safetensors",
    "attacker": f"{R}/do/it{{it}}/attacker.safetensors",
    "payoff": f"{R}/do/it{{it}}/payoff.json",
    "meta": f"{R}/do/it{{it}}/meta.json",
    "evaluation_do": f"{R}/evaluation/do/{{target}}.json",
    "evaluation_baseline": f"{R}/evaluation/baselines/{{method}}.json",
    "metrics": f"{R}/metrics.json",
    "report": f"{R}/report/summary.md",
}

# Plots written beside the report.
REPORT_PLOTS = ("payoff_heatmap.png", "meta_strategy.png", "do_gap.png", "robustness_curve.png")

COMMANDS = {
    "prepare_data": "doracle data --params {params.file} --out {output.data} --log {log}",
    "train_base": "doracle train --params {params.file} --role base --data {input.data} --out {output.model} --log {log}",
    "train_baseline": ("doracle train --params {params.file} --role baseline --method {wildcards.method} "
                       "--data {input.data} --out {output.model} --log {log}"),
    "do_init": ("doracle do init --params {params.file} --data {input.data} --base {input.base} "
                "--attacker-out {output.attacker} --out {output.population} --log {log}"),
    "best_response_defender": ("doracle do best-response --player defender --params {params.file} "
                               "--data {input.data} --state {input.state} --iteration {wildcards.it} "
                               "--out {output.model} --log {log}"),
    "best_response_attacker": ("doracle do best-response --player attacker --params {params.file} "
                               "--data {input.data} --state {input.state} --iteration {wildcards.it} "
                               "--out {output.model} --log {log}"),
    "payoff": ("doracle do payoff --params {params.file} --data {input.data} --state {input.state} "
               "--iteration {wildcards.it} --defender {input.defender} --attacker {input.attacker} "
               "--out {output.payoff} --log {log}"),
    "solve": ("doracle do solve --params {params.file} --state {input.state} --payoff {input.payoff} "
              "--out {output.meta} --log {log}"),
    "prune": ("doracle do prune --params {params.file} --state {input.state} --payoff {input.payoff} "
              "--meta {input.meta} --out {output.population} --log {log}"),
    "evaluate_do": ("doracle evaluate --params {params.file} --data {input.data} --model {wildcards.target} "
                    "--population {input.population} --state {params.state} --out {output.evaluation} --log {log}"),
    "evaluate_baseline": ("doracle evaluate --params {params.file} --data {input.data} --model {wildcards.method} "
                          "--checkpoint {input.model} --state {params.state} --out {output.evaluation} --log {log}"),
    "metrics": ("doracle metrics --params {params.file} --population {input.population} "
                "--evaluation {params.evaluations} --out {output.metrics} --log {log}"),
    "report": ("doracle report --params {params.file} --metrics {input.metrics} --population {input.population} "
               "--payoff {input.payoff} --out {output.report} --log {log}"),
}

# Which stages' params (STAGE_PARAMS) each rule reads.
RULE_STAGES = {
    "prepare_data": ("data",),
    "train_base": ("train", "base"),
    "train_baseline": ("train", "baseline"),
    "do_init": ("init",),
    "best_response_defender": ("best_response_defender",),
    "best_response_attacker": ("best_response_attacker",),
    "payoff": ("payoff",),
    "solve": ("solve",),
    "prune": ("prune",),
    "evaluate_do": ("evaluate",),
    "evaluate_baseline": ("evaluate",),
    "metrics": ("metrics",),
    "report": ("report",),
}

# Where each rule runs on a cluster: the family of params.yaml's `resources` its jobs ask for, or
# None for a job that runs on the submitting host (Snakemake's localrules): the one-second jobs
# (solve, prune, metrics, report), and prepare_data, whose download needs the login node's network
# (compute nodes often have none).
RULE_RESOURCES = {
    "prepare_data": None,
    "train_base": "train",
    "train_baseline": "train",
    "do_init": "best_response",
    "best_response_defender": "best_response",
    "best_response_attacker": "best_response",
    "payoff": "payoff",
    "solve": None,
    "prune": None,
    "evaluate_do": "evaluate",
    "evaluate_baseline": "evaluate",
    "metrics": None,
    "report": None,
}
LOCAL_RULES = tuple(r for r, family in RULE_RESOURCES.items() if family is None)


def rule_threads(params: Params, rule: str) -> int:
    """The threads a rule's job uses: ``params.threads`` (torch's CPU threads) for the rules whose
    stages read it, else 1. Snakemake schedules by it; the SLURM executor asks for as many CPUs."""
    reads = {k for s in RULE_STAGES[rule] for k in STAGE_PARAMS[s]}
    return params.threads if "threads" in reads else 1


def rule_resources(params: Params, rule: str) -> dict:
    """The Snakemake resources of a rule's jobs, from its family in ``params.resources`` (names the
    SLURM executor plugin reads: gpu, gpu_model, gres, cpus_per_task, mem_mb, runtime in minutes,
    slurm_partition, constraint, slurm_extra). Unset keys are left out; local rules get none."""
    family = RULE_RESOURCES[rule]
    if family is None:
        return {}
    res = getattr(params.resources, family)
    out = {"cpus_per_task": res.cpus_per_task or rule_threads(params, rule), "mem_mb": res.mem_mb,
           "runtime": res.runtime}
    if res.gpu:
        out["gpu"] = res.gpu
    for key in ("gpu_model", "gres", "slurm_partition", "constraint", "slurm_extra"):
        if getattr(res, key) is not None:
            out[key] = getattr(res, key)
    return out


# The DO targets every experiment evaluates (see doracle.evaluation.suite.do_target).
DO_TARGETS = ("do_mixture", "do_best_member", "do_uniform")


def sidecar(path: str) -> str:
    """The JSON sidecar of an artifact path (or pattern), as Snakemake and DVC want it: a string."""
    return str(artifacts.sidecar(path))


def log_path(output: str) -> str:
    """logs/... mirrors results/... (same wildcards)."""
    return "logs/" + str(Path(output).with_suffix(".log")).removeprefix("results/")


def bench_path(output: str) -> str:
    return "benchmarks/" + str(Path(output).with_suffix(".tsv")).removeprefix("results/")


def it3(t: int) -> str:
    return f"{t:03d}"


def state_path(evaluation: str) -> str:
    """The resumable evaluation state beside an evaluation output (not an output itself, so a
    failed job keeps it)."""
    return str(Path(evaluation).with_suffix(".state.json"))


def evaluation_files(params: Params) -> list[str]:
    exp = params.experiment
    return ([PATTERNS["evaluation_do"].format(exp=exp, target=t) for t in DO_TARGETS]
            + [PATTERNS["evaluation_baseline"].format(exp=exp, method=m) for m in params.baselines.methods])


def report_plots(report: str) -> dict[str, str]:
    """The plots written beside ``report`` (a path or a pattern), keyed by name."""
    return {Path(x).stem: str(Path(report).parent / x) for x in REPORT_PLOTS}


def tracked(params: Params, rule: str) -> str:
    """The params a rule reads, as canonical JSON: Snakemake reruns the rule when they change."""
    import json

    keys = dict.fromkeys(k for s in RULE_STAGES[rule] for k in STAGE_PARAMS[s])
    return json.dumps(params.stage(*keys), sort_keys=True)


def final_targets(params: Params) -> list[str]:
    exp = params.experiment
    rep = PATTERNS["report"].format(exp=exp)
    return [PATTERNS["metrics"].format(exp=exp), rep, *report_plots(rep).values()]


def jobs(params: Params, params_file: str = PARAMS_FILE) -> list[dict]:
    """Every job of the experiment with concrete inputs, outputs, log and command."""
    exp = params.experiment
    T = params.do.iterations

    def p(name, **wc):
        return PATTERNS[name].format(exp=exp, **wc)

    out: list[dict] = []

    def add(rule, name, inputs, outputs, wildcards=None, extra_params=None):
        log = log_path(next(iter(outputs.values())))
        ns = {"input": SimpleNamespace(**inputs), "output": SimpleNamespace(**outputs),
              "wildcards": SimpleNamespace(**(wildcards or {})), "log": log,
              "params": SimpleNamespace(file=params_file, **(extra_params or {}))}
        out.append({"rule": rule, "name": name, "cmd": COMMANDS[rule].format(**ns), "inputs": inputs,
                    "outputs": outputs, "log": log, "benchmark": bench_path(next(iter(outputs.values()))),
                    "stages": RULE_STAGES[rule], "wildcards": wildcards or {}})

    data = p("data")
    add("prepare_data", "prepare_data", {}, {"data": data, "data_meta": sidecar(data)})
    base = p("base")
    add("train_base", "train_base", {"data": data}, {"model": base, "model_meta": sidecar(base)})
    baselines = {}
    for m in params.baselines.methods:
        baselines[m] = p("baseline", method=m)
        add("train_baseline", f"train_baseline_{m}", {"data": data},
            {"model": baselines[m], "model_meta": sidecar(baselines[m])}, {"method": m})
    att0 = p("init_attacker")
    add("do_init", "do_init", {"data": data, "base": base},
        {"population": p("population", it=it3(0)), "attacker": att0, "attacker_meta": sidecar(att0)})
    for t in range(1, T + 1):
        it, prev = it3(t), it3(t - 1)
        state = p("population", it=prev)
        d, a = p("defender", it=it), p("attacker", it=it)
        add("best_response_defender", f"best_response_defender_it{it}", {"data": data, "state": state},
            {"model": d, "model_meta": sidecar(d)}, {"it": it})
        add("best_response_attacker", f"best_response_attacker_it{it}", {"data": data, "state": state},
            {"model": a, "model_meta": sidecar(a)}, {"it": it})
        add("payoff", f"payoff_it{it}", {"data": data, "state": state, "defender": d, "attacker": a},
            {"payoff": p("payoff", it=it)}, {"it": it})
        add("solve", f"solve_it{it}", {"state": state, "payoff": p("payoff", it=it)}, {"meta": p("meta", it=it)},
            {"it": it})
        add("prune", f"prune_it{it}", {"state": state, "payoff": p("payoff", it=it), "meta": p("meta", it=it)},
            {"population": p("population", it=it)}, {"it": it})
    final = p("population", it=it3(T))
    for t in DO_TARGETS:
        ev = p("evaluation_do", target=t)
        add("evaluate_do", f"evaluate_{t}", {"data": data, "population": final}, {"evaluation": ev}, {"target": t},
            {"state": state_path(ev)})
    for m in params.baselines.methods:
        ev = p("evaluation_baseline", method=m)
        add("evaluate_baseline", f"evaluate_baseline_{m}", {"data": data, "model": baselines[m]}, {"evaluation": ev},
            {"method": m}, {"state": state_path(ev)})
    evs = evaluation_files(params)
    add("metrics", "metrics", {"population": final, **{f"evaluation_{k}": v for k, v in enumerate(evs)}},
        {"metrics": p("metrics")}, extra_params={"evaluations": " ".join(evs)})
    rep = p("report")
    add("report", "report", {"metrics": p("metrics"), "population": final, "payoff": p("payoff", it=it3(T))},
        {"report": rep, **report_plots(rep)})
    return out


def lineage(params: Params, output: str) -> list[dict]:
    """Every job upstream of ``output`` (the job that writes it included), in pipeline order."""
    all_jobs = jobs(params)
    producer = {o: j for j in all_jobs for o in j["outputs"].values()}
    todo, seen = [output], set()
    while todo:
        job = producer.get(todo.pop())
        if job is None or job["name"] in seen:
            continue
        seen.add(job["name"])
        todo.extend(job["inputs"].values())
    return [j for j in all_jobs if j["name"] in seen]


def dvc_stages(params: Params, params_file: str = PARAMS_FILE) -> dict:
    stages = {}
    for job in jobs(params, params_file):
        keys = list(dict.fromkeys(k for s in job["stages"] for k in STAGE_PARAMS[s]))
        stage = {"cmd": job["cmd"]}
        if job["inputs"]:
            stage["deps"] = list(job["inputs"].values())
        stage["params"] = [{params_file: keys}] if params_file != PARAMS_FILE else keys
        stage["outs"] = list(job["outputs"].values())
        stages[job["name"]] = stage
    return {"stages": stages}


DVC_HEADER = ("# Generated by `doracle dvc-yaml` from params.yaml and doracle.pipeline: do not edit.\n"
              "# The same jobs as the Snakemake workflow (tests/test_pipeline_drift.py checks it).\n")


def dvc_yaml_text(params: Params, params_file: str = PARAMS_FILE) -> str:
    return DVC_HEADER + yaml.safe_dump(dvc_stages(params, params_file), sort_keys=False, width=1000)


def _relative(path) -> str:
    """``path`` relative to the working directory when it lies inside it (commands stay portable)."""
    p = Path(path).resolve()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def workflow_params(config: dict, cli_configfiles: list | None = None) -> tuple[Params, str]:
    """Validate Snakemake's ``config`` at workflow load; returns (params, the params file the jobs read).

    The jobs read the params *file* (so that DVC, which has no notion of Snakemake's config, runs
    the same commands): ``params.yaml``, or the one file given with ``--configfile``. ``--config``
    overrides would silently not reach the jobs, so they are refused.
    """
    from doracle import config as cfg
    from doracle.errors import ConfigError

    files = [_relative(f) for f in (cli_configfiles or [])]
    if len(files) > 1:
        raise ConfigError(f"give at most one --configfile (a complete params file), got {files}")
    params_file = files[0] if files else PARAMS_FILE
    params = cfg.validate(config, f"{params_file} (as loaded by Snakemake)")
    if params != cfg.load(params_file):
        raise ConfigError(
            f"Snakemake's config differs from {params_file}: the jobs read {params_file}, so --config "
            "overrides and partial --configfile files are not supported. Copy params.yaml, edit the "
            "copy and pass it with --configfile.")
    cfg.check_names(params)
    return params, params_file
