"""A sweep's report: ``results/sweeps/<study>/report/`` (summary.md, Optuna's matplotlib plots:
optimisation history, parameter importances, intermediate values), written whole, and
``best.json`` beside it."""

from __future__ import annotations

import contextlib
import fcntl
import json
import warnings
from collections import Counter
from pathlib import Path

from doracle.artifacts import atomic_dir, write_json
from doracle.report.html import Page, markdown_blocks
from doracle.sweep.space import SweepSpec

PLOTS = {
    "optimization_history.png": "plot_optimization_history",
    "param_importances.png": "plot_param_importances",
    "intermediate_values.png": "plot_intermediate_values",
}


def best_trial(study, spec: SweepSpec):
    # optuna (about a second to import): only sweeps and DONAS searches load it
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not done:
        return None
    sign = -1.0 if spec.direction == "maximize" else 1.0
    return min(done, key=lambda t: (sign * t.value, t.number))  # ties: the first trial


def _plot(study, fn: str, out: Path) -> str | None:
    """Save one Optuna plot; the reason when it cannot be drawn."""
    # matplotlib: loaded only when a figure is drawn
    import matplotlib

    matplotlib.use("Agg")
    # matplotlib: loaded only when a figure is drawn
    import matplotlib.pyplot as plt
    import optuna.visualization.matplotlib as ovm
    from optuna.exceptions import ExperimentalWarning
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if fn == "plot_param_importances":
        varying = [k for k in (complete[0].params if complete else {})
                   if len({json.dumps(t.params.get(k)) for t in complete}) > 1]
        if len(complete) < 2 or not varying:
            return "needs at least 2 completed trials and a parameter that varies among them"
    if fn == "plot_intermediate_values" and not any(t.intermediate_values for t in study.trials):
        return "no trial reported an intermediate value"
    if fn == "plot_optimization_history" and not complete:
        return "no completed trial"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        warnings.simplefilter("ignore", UserWarning)  # e.g. PED-ANOVA's "importances will be equal"
        try:
            ax = getattr(ovm, fn)(study)
        except (ValueError, RuntimeError) as exc:
            return f"Optuna could not draw it: {exc}"
    fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
    fig.set_size_inches(7, 4.5)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return None


def _cell(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@contextlib.contextmanager
def _report_lock(folder: Path):
    """An exclusive lock (flock) on ``folder``/report.lock while a worker writes the report."""

    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "report.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _write_html(lines: list[str], tmp: Path, out: Path, spec: SweepSpec, best) -> None:
    """index.html of the sweep (the same content as summary.md, plots embedded), with relative links
    to best.json and to the best trial's own report (results/<experiment>/report/index.html)."""

    page = Page(f"Sweep {spec.space.study}", tmp, out)
    markdown_blocks(page, lines)
    if best is not None and best.user_attrs.get("experiment"):
        trial = Path("results") / best.user_attrs["experiment"] / "report" / "index.html"
        page.raw(f"<p>Best trial's report: {page.link(trial)}; the sweep's best: {page.link(spec.dir / 'best.json')}</p>")
    (tmp / "index.html").write_text(page.text())


def write_report(study, spec: SweepSpec) -> Path:
    """Write the report folder and best.json; returns the folder."""

    trials = study.get_trials(deepcopy=False)
    best = best_trial(study, spec)
    out = spec.dir / "report"
    keys = list(spec.space.params)
    states = Counter(t.state.name for t in trials)
    lines = [f"# Sweep {spec.space.study}", "",
             f"Space `{spec.source}` over `{spec.space.base}`; metric `{spec.metric}` ({spec.direction}); "
             f"sampler {spec.space.sampler}, pruner {spec.space.pruner.name}, intermediate value "
             f"{spec.space.intermediate}; storage `{spec.journal or spec.space.storage}`.", "",
             "Trials: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + "", ""]
    if best is None:
        lines += ["No completed trial yet.", ""]
    else:
        lines += [f"**Best: trial {best.number}**, {spec.metric} = {best.value:.4f}, "
                  f"results/{best.user_attrs.get('experiment')}/", ""]
        lines += [f"- `{k}`: {_cell(v)}" for k, v in best.params.items()] + [""]
    lines += ["| trial | state | " + " | ".join(f"`{k}`" for k in keys) + " | value | experiment | note |",
              "|---" * (len(keys) + 5) + "|"]
    for t in trials:
        note = ("surplus" if t.user_attrs.get("surplus") else
                f"retry of {t.user_attrs['retry_of']}" if "retry_of" in t.user_attrs else
                t.user_attrs.get("fail_reason", ""))
        vals = " | ".join(_cell(t.params.get(k, "")) for k in keys)
        value = "" if t.value is None else f"{t.value:.4f}"
        lines.append(f"| {t.number} | {t.state.name} | {vals} | {value} | {t.user_attrs.get('experiment', '')} | {note} |")
    lines.append("")
    with _report_lock(spec.dir):  # workers finishing together write one at a time
        with atomic_dir(out, "sweep report") as tmp:
            notes = []
            for name, fn in PLOTS.items():
                why = _plot(study, fn, tmp / name)
                notes.append(f"- {name}: " + (f"not drawn: {why}" if why else f"![{name}]({name})"))
            (tmp / "summary.md").write_text("\n".join(lines + ["## Plots", "", *notes, ""]))
            _write_html(lines[2:] + ["## Plots", "", *notes], tmp, out, spec, best)
        if best is not None:
            write_json(spec.dir / "best.json", {
                "study": spec.space.study, "trial": best.number, "value": best.value, "metric": spec.metric,
                "direction": spec.direction, "params": best.params,
                "experiment": best.user_attrs.get("experiment"), "metrics": best.user_attrs.get("metrics"),
                "params_file": best.user_attrs.get("params_file")})
    return out
