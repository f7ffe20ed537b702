"""Where every artifact of an experiment lives: path patterns with Snakemake's wildcards (``{exp}``,
``{it}``, ``{role}``, ``{player}``, ``{method}``, ``{target}``) and the paths derived from them (sidecars,
logs, Snakemake's per-job benchmark files, evaluation states). Pure data and string functions: the
foundation layer, imported by the games' jobs, the job graph (:mod:`doracle.games.graph`) and the
pipeline adapters alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from doracle import artifacts

if TYPE_CHECKING:  # pydantic: not for the command line's start (the jobs' table reads these paths)
    from doracle.config import Params

R = "results/{exp}"
PATTERNS = {
    "data": f"{R}/data/dataset.safetensors",
    "model": f"{R}/{{role}}/model.safetensors",  # trained once outside the DO loop (Game.train_roles)
    "baseline": f"{R}/baselines/{{method}}/model.safetensors",
    "init": f"{R}/do/it000/init.safetensors",  # the strategies the init job adds
    "population": f"{R}/do/it{{it}}/population.json",
    "strategy": f"{R}/do/it{{it}}/{{player}}.safetensors",  # a best response
    "payoff": f"{R}/do/it{{it}}/payoff.json",
    "meta": f"{R}/do/it{{it}}/meta.json",
    # the closing step: the best response to the deployed player's final meta-strategy, and the
    # population it closes (one more row or column, solved once more): what evaluation reads
    "closing_model": f"{R}/do/closing/response.safetensors",
    "closed": f"{R}/do/closing/population.json",
    "evaluation_do": f"{R}/evaluation/do/{{target}}.json",
    "evaluation_baseline": f"{R}/evaluation/baselines/{{method}}.json",
    "metrics": f"{R}/metrics.json",
    "headline": f"{R}/headline.json",  # the headline numbers (dvc metrics), written with metrics.json
    "report": f"{R}/report",  # a folder: index.html, summary.md, the game's plots and plots/*.json
}
SUMMARY = "summary.md"
HTML = "index.html"

def sidecar(path: str) -> str:
    """The JSON sidecar of an artifact path (or pattern), as Snakemake and DVC want it: a string."""
    return str(artifacts.sidecar(path))


def log_path(output: str) -> str:
    """logs/... mirrors results/... (same wildcards)."""
    out = Path(output)
    return "logs/" + str(out.with_suffix(".log") if out.suffix else out / "index.log").removeprefix("results/")


def bench_path(output: str) -> str:
    out = Path(output)
    return "benchmarks/" + str(out.with_suffix(".tsv") if out.suffix else out / "index.tsv").removeprefix("results/")


def it3(t: int) -> str:
    return f"{t:03d}"


def state_path(evaluation: str) -> str:
    """The resumable evaluation state beside an evaluation output (not an output itself, so a
    failed job keeps it)."""
    return str(Path(evaluation).with_suffix(".state.json"))


def summary_path(params: Params) -> str:
    return f"{PATTERNS['report'].format(exp=params.experiment)}/{SUMMARY}"


def html_path(params: Params) -> str:
    return f"{PATTERNS['report'].format(exp=params.experiment)}/{HTML}"


def final_targets(params: Params) -> list[str]:
    exp = params.experiment
    return [PATTERNS["metrics"].format(exp=exp), PATTERNS["report"].format(exp=exp)]
