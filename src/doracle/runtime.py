"""Device, threads and seeds: the run-time context of a torch job. Never hard-codes CUDA."""

from __future__ import annotations

import hashlib
import random

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


def derive_seed(seed: int, *tags: object) -> int:
    """A stable 31-bit seed for one job, derived from the experiment seed and the job's tags."""
    h = hashlib.sha256(repr((seed, *tags)).encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def setup(seed: int, device: str = "auto", threads: int = 1) -> str:
    """Seed every RNG, fix the thread count (CPU results depend on it), return the device."""
    import torch

    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    return resolve_device(device)
