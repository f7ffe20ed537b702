"""A stand-in for a sweep trial's pipeline (``Worker(pipeline=...)``): it writes what the sweep
reads, where the pipeline writes it, in milliseconds, so the sweep logic (pruning, retries after a
dead worker, heartbeats, storages, two workers, the report) is tested without running Snakemake
for every trial.

For a population target (``results/<exp>/do/it<t>/population.json``) it writes a sealed population
document whose game value and gap follow from the trial's ``training.lr``; for the final targets,
``metrics.json`` (the AT shape: ``models.do_mixture.robust_accuracy.worst_case``, ``clean_accuracy``)
and a report folder. Every call appends a line to the trial's log, like Snakemake's output.

Run as a script it is ``doracle sweep`` with this pipeline (for tests that kill a worker):
``python tests/fake_trials.py SPACE [--cores N] [--worker K]``. Environment:
``FAKE_TRIAL_SECONDS`` (each call takes this long), ``FAKE_BLOCK`` (an experiment name: its first
call writes ``results/<exp>/blocked`` and waits until the worker is killed or stopped).
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent


def value_of(lr: float, iteration: int | None = None) -> float:
    """The fake metric: highest at lr = 1e-3, in (0, 1); per iteration a little lower."""
    v = 0.9 - 0.1 * abs(math.log10(lr) + 3.0)
    return v if iteration is None else v - 0.01 / iteration


def pipeline(worker, trial_file: Path, targets: list[str], log: Path) -> None:
    from doracle.artifacts import write_json
    from doracle.sweep.runner import Stopped

    raw = yaml.safe_load(Path(trial_file).read_text())
    exp, lr = raw["experiment"], float(raw["training"]["lr"])
    with Path(log).open("a") as fh:
        fh.write(f"fake pipeline: {' '.join(targets)}\n")
    blocked = Path(f"results/{exp}/blocked")
    if os.environ.get("FAKE_BLOCK") == exp and not blocked.exists():
        blocked.parent.mkdir(parents=True, exist_ok=True)
        blocked.write_text("waiting\n")
        while not worker.stopping:
            time.sleep(0.02)
    deadline = time.monotonic() + float(os.environ.get("FAKE_TRIAL_SECONDS", "0"))
    while time.monotonic() < deadline and not worker.stopping:
        time.sleep(0.01)
    if worker.stopping:
        raise Stopped(f"signal {worker.stopping}")
    for target in targets:
        path = Path(target)
        if m := re.search(r"/do/it(\d{3})/population\.json$", target):
            t = int(m.group(1))
            write_json(path, {"kind": "population", "experiment": exp,
                              "state": {"iteration": t, "value": value_of(lr, t),
                                        "history": [{"iteration": t, "gap": 0.05 / t}]}})
        elif target.endswith("/metrics.json"):
            v = value_of(lr)
            write_json(path, {"kind": "metrics", "experiment": exp,
                              "models": {"do_mixture": {"clean_accuracy": min(1.0, v + 0.05),
                                                        "robust_accuracy": {"worst_case": v}}}})
        elif target.endswith("/report"):
            path.mkdir(parents=True, exist_ok=True)
            (path / "summary.md").write_text(f"# fake report of {exp}\n")
            (path / "index.html").write_text(f"<html><body>fake report of {exp}</body></html>\n")
        else:
            raise AssertionError(f"fake pipeline: unknown target {target}")


if __name__ == "__main__":
    from doracle.cli import main

    sys.exit(main(["sweep", *sys.argv[1:]], extra={"pipeline": pipeline}))
