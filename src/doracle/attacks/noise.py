"""Random numbers for attacks: a seeded ``torch.Generator`` or per-example keyed noise.

Attacks draw their randomness (random starts, Langevin noise) through :func:`uniform` and
:func:`normal`, which take either

* a ``torch.Generator`` (CPU, seeded): one stream for the whole call, so an example's draws depend
  on its position in the batch; or
* :class:`KeyedNoise`: a counter-based generator whose draws for an example depend only on the
  seed, the example's *key* (its index in the data split) and how many draws came before in the
  same call. An attacker strategy uses it so that its perturbation of an example is the same
  whether it is computed once for the whole split (cached) or per training batch (on the fly), in
  any batch composition, on any device: it is computed where the data is, with no host
  round trip in the attack loop.

The hash is Chris Wellons' ``lowbias32`` on 32-bit words held in int64 (every product stays below
2^63, so nothing overflows on any backend).
"""

from __future__ import annotations

import math

import torch

from doracle.runtime import to_device

_M32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """(x * c) mod 2^32 for x < 2^32, without int64 overflow."""
    lo = x * (c & 0xFFFF)
    hi = ((x * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _M32


def _hash32(x: torch.Tensor) -> torch.Tensor:
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


class KeyedNoise:
    """Per-example counter-based noise: ``rand``/``randn`` of shape (len(keys), ...)."""

    def __init__(self, seed: int, keys: torch.Tensor) -> None:
        self.seed = int(seed) & _M32
        self.keys = keys.to(torch.int64)
        self.calls = 0  # draws so far: the second random start differs from the first

    def subset(self, index: torch.Tensor) -> KeyedNoise:
        out = KeyedNoise(self.seed, self.keys[index])
        out.calls = self.calls
        return out

    def _bits(self, shape, device) -> torch.Tensor:
        if shape[0] != len(self.keys):
            raise ValueError(f"keyed noise for {len(self.keys)} examples asked for shape {tuple(shape)}")
        per = math.prod(shape[1:])
        if self.keys.device != torch.device(device):  # once: later draws find them there
            self.keys = to_device(self.keys, device)
        keys = self.keys
        stream = _hash32(_hash32(torch.full_like(keys, self.seed) ^ (keys & _M32)) ^ self.calls)
        self.calls += 1
        counter = torch.arange(per, device=device, dtype=torch.int64)
        return _hash32(stream[:, None] ^ _hash32(counter)[None, :]).view(shape)

    def rand(self, shape, device) -> torch.Tensor:
        """Uniform in [0, 1), float32 (24 random bits)."""
        return (self._bits(shape, device) >> 8).to(torch.float32) * (1.0 / (1 << 24))

    def randn(self, shape, device) -> torch.Tensor:
        """Standard normal (Box-Muller on two keyed uniforms)."""
        u1 = 1.0 - self.rand(shape, device)  # (0, 1]
        u2 = self.rand(shape, device)
        return torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2 * math.pi * u2)

    def integer_seed(self) -> int:
        """One integer for things that are not per example (e.g. a network's initialisation)."""
        self.calls += 1
        return int(_hash32(torch.tensor([self.seed ^ self.calls])).item())


def uniform(shape, gen, device) -> torch.Tensor:
    if isinstance(gen, KeyedNoise):
        return gen.rand(shape, device)
    return to_device(torch.rand(shape, generator=gen), device)


def normal(shape, gen, device) -> torch.Tensor:
    if isinstance(gen, KeyedNoise):
        return gen.randn(shape, device)
    return to_device(torch.randn(shape, generator=gen), device)
