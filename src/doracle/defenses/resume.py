"""Preemption-safe training: the full state of a training run, saved and restored exactly.

A cluster sends SIGTERM (or the signal named by ``sbatch --signal``, e.g. SIGUSR1) before a time
limit or a preemption. :class:`Preemption` turns those signals into a flag that the training loop
checks after every batch: it then saves its state and raises :class:`Preempted`; the CLI exits
with :data:`EXIT_PREEMPTED` and the profile's ``retries`` (or SLURM's requeue) runs the job again,
which resumes from the saved batch. Without a signal the state is saved at the end of every epoch,
so even a SIGKILL loses at most one epoch.

The state is everything the rest of the run depends on: the model's weights, the optimizer's
state, the step and epoch, the epoch's example order and position, the loss history, every random
number stream (the loop's generator, torch's global stream that dropout draws from, CUDA's,
NumPy's and Python's), and the defense's own state (DALE's dual variable, L2L's attacker network
and its optimizer). Resumed runs therefore end with the same weights, bit for bit on CPU, as
uninterrupted ones. Saved as safetensors + JSON (no pickle), atomically, hash-checked on load; a
state made for other settings (its fingerprint differs) is refused and training starts over.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
from pathlib import Path

import numpy as np
import torch

from doracle import artifacts
from doracle.errors import EXIT_PREEMPTED, ArtifactError, Preempted  # noqa: F401 (re-exported)
from doracle.runtime import module_device

SIGNALS = ("SIGTERM", "SIGUSR1")


class Preemption:
    """While active, SIGTERM/SIGUSR1 set :attr:`requested` instead of killing the process."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._old: dict = {}

    def _handler(self, signum, frame) -> None:
        self.requested = signal.Signals(signum).name

    def __enter__(self) -> Preemption:
        if threading.current_thread() is threading.main_thread():
            for name in SIGNALS:
                sig = getattr(signal, name)
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()


def checkpoint_path(out: str | Path) -> Path:
    """Where the training job writing ``out`` keeps its resumable state (not a pipeline output,
    so a failed or preempted job keeps it)."""
    out = Path(out)
    return out.with_name(out.stem + ".resume.safetensors")


def _flatten(prefix: str, tree, tensors: dict, meta):
    """Split a nested dict/list of tensors and JSON values into ``tensors`` (by dotted key) and a
    JSON skeleton that refers to them."""
    if isinstance(tree, torch.Tensor):
        tensors[prefix] = tree.detach().clone()
        return {"__tensor__": prefix}
    if isinstance(tree, dict):
        return {"__dict__": [[_flatten(f"{prefix}.k{i}", k, tensors, meta),
                              _flatten(f"{prefix}.{i}", v, tensors, meta)] for i, (k, v) in enumerate(tree.items())]}
    if isinstance(tree, list | tuple):
        items = [_flatten(f"{prefix}.{i}", v, tensors, meta) for i, v in enumerate(tree)]
        return {"__tuple__": items} if isinstance(tree, tuple) else items
    if isinstance(tree, np.ndarray):
        return {"__ndarray__": tree.tolist(), "dtype": str(tree.dtype)}
    if isinstance(tree, np.integer | np.floating):
        return tree.item()
    return tree


def _unflatten(node, tensors: dict, device):
    if isinstance(node, dict):
        if "__tensor__" in node:
            return tensors[node["__tensor__"]].to(device)
        if "__dict__" in node:
            return {_unflatten(k, tensors, device): _unflatten(v, tensors, device) for k, v in node["__dict__"]}
        if "__tuple__" in node:
            return tuple(_unflatten(v, tensors, device) for v in node["__tuple__"])
        if "__ndarray__" in node:
            return np.asarray(node["__ndarray__"], dtype=node["dtype"])
    if isinstance(node, list):
        return [_unflatten(v, tensors, device) for v in node]
    return node


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}


def _set_rng_state(s: dict) -> None:
    torch.set_rng_state(s["torch"].cpu())
    np.random.set_state(s["numpy"])
    random.setstate((s["python"][0], tuple(s["python"][1]), s["python"][2]))
    if s["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.cpu() for t in s["cuda"]])


def _optimizer(opt):
    """The optimizer whose state_dict holds the state (wrappers such as AMP share their base's)."""
    return getattr(opt, "base", opt)


def save(path: Path, *, fingerprint: str, model, opt, defense, gen: torch.Generator, loop: dict) -> None:
    """Atomically write the whole training state; ``loop`` holds the loop's own variables."""
    tensors: dict[str, torch.Tensor] = {}
    tree = {"model": model.state_dict(), "optimizer": _optimizer(opt).state_dict(), "defense": defense.state(),
            "generator": gen.get_state(), "rng": _rng_state(), "loop": loop}
    skeleton = _flatten("s", tree, tensors, None)
    artifacts.save_tensors(path, tensors, {"kind": "training_state", "fingerprint": fingerprint,
                                           "skeleton": skeleton})


def load(path: Path, *, fingerprint: str, model, opt, defense, gen: torch.Generator, log=print) -> dict | None:
    """Restore the training state saved at ``path`` into the given objects; returns the loop's
    variables, or None (start over) when there is no state or it was made for other settings."""
    if not path.is_file():
        return None
    try:
        tensors, meta = artifacts.load_tensors(path, "cpu")
    except ArtifactError as exc:
        log(f"training state {path} is unreadable ({exc}): starting over")
        return None
    if meta.get("fingerprint") != fingerprint:
        log(f"training state {path} was made for other settings or inputs: not resuming from it, starting over")
        return None
    device = module_device(model)
    tree = _unflatten(meta["skeleton"], tensors, device)
    model.load_state_dict(tree["model"])
    _optimizer(opt).load_state_dict(tree["optimizer"])
    defense.load_state(tree["defense"])
    gen.set_state(tree["generator"].cpu())
    _set_rng_state(tree["rng"])
    loop = tree["loop"]
    log(f"resuming training from {path}: epoch {loop['epoch'] + 1}, batch {loop['batch']}")
    return loop


def remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    artifacts.sidecar(path).unlink(missing_ok=True)
