"""Compute accounting: forward and backward passes through networks, counted per example.

Every job that runs networks (training, attacks, payoff evaluation) counts them with
:class:`PassCounter` and records ``{"forward_passes": F, "backward_passes": B}`` under ``compute``
in its artifact; ``doracle metrics`` adds them up over every job that produced a model, with the
jobs' wall seconds (each job's own record: :func:`job_wall_seconds`), so "the same budget" can be
checked.

A pass is one example through one network: a batch of 64 through a mixture of 3 members is 192
forward passes. Backward passes count gradients through the network, whether for its weights
(training) or for its input (attacks).
"""

from __future__ import annotations

import warnings

from doracle.artifacts import read_json, timing_of

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


def job_wall_seconds(docs: list[dict]) -> float | None:
    """A job's wall seconds from its JSON outputs ``docs``: the largest ``timing.process_seconds``
    (seconds from the job's process start, interpreter and imports included, to its last JSON
    write; :func:`doracle.artifacts.process_seconds`). The same whether Snakemake or ``dvc repro``
    ran it. None when no output recorded it (files from before doracle recorded it)."""
    seconds = [s for s in (timing_of(d, "process_seconds") for d in docs) if isinstance(s, (int, float))]
    return max(seconds) if seconds else None


def jobs_cost(jobs: list[dict]) -> dict:
    """The total compute of ``jobs`` (the job graph's entries upstream of a model:
    :func:`doracle.games.graph.model_cost`), data preparation excepted, from the JSON outputs the
    jobs wrote (the declared inputs of a job that accounts for them): wall seconds (null when a job
    recorded none) and network passes."""
    jobs = [j for j in jobs if j["rule"] not in SHARED_JOBS]
    docs = [[read_json(o) for o in j["outputs"].values() if o.endswith(".json")] for j in jobs]
    walls = [job_wall_seconds(d) for d in docs]
    passes = add(*(d.get("compute") for job_docs in docs for d in job_docs))
    return {"jobs": len(jobs), "wall_seconds": None if None in walls else round(sum(walls), 3), **passes,
            "passes": passes["forward_passes"] + passes["backward_passes"]}
