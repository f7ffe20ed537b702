"""Compute accounting: forward and backward passes through networks, counted per example.

Every job that runs networks (training, attacks, payoff evaluation) counts them with
:class:`PassCounter` and records ``{"forward_passes": F, "backward_passes": B}`` under ``compute``
in its artifact; ``doracle metrics`` adds them up over every job that produced a model (and the
jobs' wall seconds from Snakemake's benchmark files), so "the same budget" can be checked.

A pass is one example through one network: a batch of 64 through a mixture of 3 members is 192
forward passes. Backward passes count gradients through the network, whether for its weights
(training) or for its input (attacks).
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

from doracle.artifacts import read_json

# Hooks on a module whose inputs need no gradient (training on plain data) fire on the outputs'
# gradients, which is exactly the pass we count; PyTorch warns about it each time.
warnings.filterwarnings("ignore", message="Full backward hook is firing when gradients are computed")


class PassCounter:
    """Counts per-example forward and backward passes through ``modules`` while active."""

    def __init__(self, modules) -> None:
        self.modules = list(modules)
        self.forward = 0
        self.backward = 0
        self._handles: list = []

    def _on_forward(self, module, inputs, output) -> None:
        self.forward += int(inputs[0].shape[0]) if inputs and hasattr(inputs[0], "shape") else 1

    def _on_backward(self, module, grad_input, grad_output) -> None:
        g = grad_output[0] if grad_output else None
        self.backward += int(g.shape[0]) if g is not None else 1

    def __enter__(self) -> PassCounter:
        for m in self.modules:
            self._handles.append(m.register_forward_hook(self._on_forward))
            self._handles.append(m.register_full_backward_hook(self._on_backward))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def to_json(self) -> dict:
        return {"forward_passes": self.forward, "backward_passes": self.backward}


def add(*records: dict | None) -> dict:
    """The sum of several ``compute`` records (missing ones count as zero)."""
    out = {"forward_passes": 0, "backward_passes": 0}
    for r in records:
        for k in out:
            out[k] += int((r or {}).get(k, 0))
    return out


# The data preparation job is shared by every model; it is not part of any model's cost.
SHARED_JOBS = ("prepare_data",)


def wall_seconds(benchmark: str) -> float | None:
    """A job's wall seconds from its Snakemake benchmark file (None when it was not run by Snakemake)."""

    p = Path(benchmark)
    if not p.is_file():
        return None
    rows = list(csv.DictReader(p.read_text().splitlines(), delimiter="\t"))
    return float(rows[0]["s"]) if rows else None


def _passes(job: dict) -> dict:
    return add(*(read_json(o).get("compute") for o in job["outputs"].values() if o.endswith(".json")))


def jobs_cost(jobs: list[dict]) -> dict:
    """The total compute of ``jobs`` (the job graph's entries upstream of a model:
    :func:`doracle.games.graph.model_cost`), data preparation excepted: wall seconds (Snakemake's
    benchmark files; null when any is missing, as after ``dvc repro``) and the network passes the
    jobs recorded themselves."""
    jobs = [j for j in jobs if j["rule"] not in SHARED_JOBS]
    walls = [wall_seconds(j["benchmark"]) for j in jobs]
    passes = add(*(_passes(j) for j in jobs))
    return {"jobs": len(jobs), "wall_seconds": None if None in walls else round(sum(walls), 3), **passes,
            "passes": passes["forward_passes"] + passes["backward_passes"]}
