"""Device, threads and seeds: the run-time context of a torch job. Never hard-codes CUDA."""

from __future__ import annotations

import hashlib
import os
import random
import sys
import warnings

import numpy as np

from doracle.errors import ConfigError


def resolve_device(name: str = "auto") -> str:
    # torch: this module is imported by jobs that run no network
    import torch

    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
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
    # torch: this module is imported by jobs that run no network
    import torch

    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # another PyTorch: the public call, import and all
        torch.use_deterministic_algorithms(True, warn_only=True)
        return
    setter(True, warn_only=True)


def compile_deterministic() -> None:
    """The part of ``torch.use_deterministic_algorithms`` for compiled code (inductor's config)."""
    # torch: this module is imported by jobs that run no network
    import torch._inductor.config as inductor_config

    inductor_config.deterministic = True


#: the Optimizer methods PyTorch wraps in ``torch._disable_dynamo``: that wrapper imports
#: torch._dynamo on its first call to build the dynamo-disabled function, then caches it on the
#: function as ``__dynamo_disable``
_DYNAMO_DISABLED = ("add_param_group", "zero_grad", "state_dict", "load_state_dict")


def eager_optimizers() -> None:
    """Let PyTorch's optimizers run without importing torch._dynamo (about as long as ``import
    torch`` itself: most of a small training job's start-up). Outside ``torch.compile`` a
    dynamo-disabled function is the function: so the four wrapped Optimizer methods get
    themselves as their cached disabled version, and :func:`optimizer_step` calls the step
    without the wrapper that imports dynamo on every call. doracle compiles models, never
    optimizer code, so nothing that dynamo traces is changed; once torch._dynamo is loaded (a
    compiled model), nothing here is done and the public calls run."""
    if "torch._dynamo" in sys.modules:
        return
    # torch: this module is imported by jobs that run no network
    from torch.optim import Optimizer

    for name in _DYNAMO_DISABLED:
        fn = getattr(getattr(Optimizer, name, None), "__wrapped__", None)
        if fn is not None and not hasattr(fn, "__dynamo_disable"):
            setattr(fn, "__dynamo_disable", fn)


def _raw_step(cls):
    """``cls.step`` without PyTorch's own wrappers (the profiler hook; the grad mode and dynamo
    graph breaks of ``_use_grad``), its other decorators kept; None when PyTorch's wrappers are not
    what this expects (another PyTorch: the public call runs)."""
    # torch: this module is imported by jobs that run no network
    from torch.optim import optimizer as torch_optimizer

    fn = getattr(cls, "step", None)
    while getattr(getattr(fn, "__code__", None), "co_filename", None) == torch_optimizer.__file__ \
            and fn.__code__.co_name in ("wrapper", "_use_grad"):
        fn = getattr(fn, "__wrapped__", None)
    code = getattr(fn, "__code__", None)
    return fn if code is not None and code.co_filename != torch_optimizer.__file__ else None


def optimizer_step(opt, closure=None):
    """``opt.step(closure)``, the same update, without the ``import torch._dynamo`` that PyTorch's
    step wrapper runs on every call (:func:`eager_optimizers`). The public call runs instead
    when step hooks are registered or torch._dynamo is already loaded."""
    # torch: this module is imported by jobs that run no network
    import torch
    from torch.optim import optimizer as torch_optimizer

    raw = _raw_step(type(opt))
    hooks = (getattr(opt, "_optimizer_step_pre_hooks", None), getattr(opt, "_optimizer_step_post_hooks", None),
             getattr(torch_optimizer, "_global_optimizer_pre_hooks", None),
             getattr(torch_optimizer, "_global_optimizer_post_hooks", None))
    if raw is None or "torch._dynamo" in sys.modules or any(h is None or len(h) for h in hooks):
        return opt.step() if closure is None else opt.step(closure)
    previous = torch.is_grad_enabled()
    try:
        torch.set_grad_enabled(bool(opt.defaults.get("differentiable", False)))
        out = raw(opt) if closure is None else raw(opt, closure)
    finally:
        torch.set_grad_enabled(previous)
    opt._opt_called = True  # what an LR scheduler's wrapper of opt.step records
    return out


def setup(seed: int, device: str = "auto", threads: int = 1) -> str:
    """Seed every RNG, fix the thread count (CPU results depend on it), ask for deterministic
    kernels (CUDA: cuBLAS's workspace, cuDNN without autotuning), return the device."""
    # torch: this module is imported by jobs that run no network
    import torch

    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    deterministic_algorithms()
    eager_optimizers()
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
    # torch: this module is imported by jobs that run no network
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
    # tqdm: loaded only when a progress bar is shown
    from tqdm import tqdm

    kwargs.setdefault("mininterval", 1.0)
    return tqdm(iterable, desc=desc, file=sys.stderr, disable=not sys.stderr.isatty(), **kwargs)
