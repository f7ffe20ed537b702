"""Device, threads and seeds: the run-time context of a torch job. Never hard-codes CUDA."""

from __future__ import annotations

import hashlib
import os
import random
import sys
import warnings

import numpy as np


def resolve_device(name: str = "auto") -> str:
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        from doracle.errors import ConfigError

        raise ConfigError(f"device: {name!r} requested but CUDA is not available (use auto or cpu)")
    return name


def slurm_report(device: str, requested: str = "auto") -> str | None:
    """Inside a SLURM job: one line for the job's log (job id, node, the GPUs SLURM allocated, the
    device used), and a warning when SLURM allocated GPUs but the job runs on the CPU (``device:
    auto`` without CUDA). None outside SLURM."""
    env = os.environ
    job = env.get("SLURM_JOB_ID")
    if not job:
        return None
    gpus = env.get("SLURM_STEP_GPUS") or env.get("SLURM_JOB_GPUS") or ""
    line = (f"SLURM job {job} on {env.get('SLURMD_NODENAME', '?')}: GPUs [{gpus}], "
            f"CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', '')}, device {device}")
    if gpus and device == "cpu" and requested != "cpu":
        warnings.warn(f"SLURM allocated GPU(s) {gpus} to job {job} but CUDA is not available: running on "
                      "the CPU (set device: cuda to make this an error)", RuntimeWarning, stacklevel=2)
    return line


def derive_seed(seed: int, *tags: object) -> int:
    """A stable 31-bit seed for one job, derived from the experiment seed and the job's tags."""
    h = hashlib.sha256(repr((seed, *tags)).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


#: cuBLAS's deterministic workspace (PyTorch's reproducibility notes): read when cuBLAS starts, so
#: it is set before any CUDA work; a value the user exported is kept
CUBLAS_WORKSPACE = ":4096:8"


def deterministic_algorithms() -> None:
    """``torch.use_deterministic_algorithms(True, warn_only=True)`` for eager code, without its
    import of torch._inductor (which imports torch._dynamo: about half a second to two seconds of
    a job's start-up, for a setting only torch.compile reads; :func:`compile_deterministic` sets
    it where a model is compiled)."""
    import torch

    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # another PyTorch: the public call, import and all
        torch.use_deterministic_algorithms(True, warn_only=True)
        return
    setter(True, warn_only=True)


def compile_deterministic() -> None:
    """The part of ``torch.use_deterministic_algorithms`` for compiled code (inductor's config)."""
    import torch._inductor.config as inductor_config

    inductor_config.deterministic = True


def setup(seed: int, device: str = "auto", threads: int = 1) -> str:
    """Seed every RNG, fix the thread count (CPU results depend on it), ask for deterministic
    kernels (CUDA: cuBLAS's workspace, cuDNN without autotuning), return the device."""
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    deterministic_algorithms()
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    resolved = resolve_device(device)
    line = slurm_report(resolved, device)
    if line:
        print(line, file=sys.stderr)
    return resolved


def module_device(module):
    """The device of a module's (first) parameter."""
    return next(iter(module.parameters())).device


def to_device(t, device):
    """``t`` on ``device`` without making the host wait: a CPU tensor bound for a GPU goes through
    pinned memory with an asynchronous copy (a copy from ordinary memory waits for the GPU)."""
    import torch

    device = torch.device(device)
    if t.device == device:
        return t
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def progress(iterable=None, desc: str | None = None, **kwargs):
    """A tqdm progress bar over ``iterable`` on stderr when stderr is a terminal, silent otherwise
    (Snakemake and SLURM logs, pipes): the one place every long loop gets its bar from."""
    from tqdm import tqdm

    kwargs.setdefault("mininterval", 1.0)
    return tqdm(iterable, desc=desc, file=sys.stderr, disable=not sys.stderr.isatty(), **kwargs)
