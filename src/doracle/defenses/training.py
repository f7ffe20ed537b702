"""The shared training loop of every classifier: base model, baselines, DO defender oracle."""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from doracle.compute import PassCounter
from doracle.config import Training
from doracle.data.augment import augment
from doracle.defenses import resume
from doracle.defenses.base import Defense
from doracle.errors import ConfigError, TrainingDiverged
from doracle.runtime import (
    compile_deterministic,
    module_device,
    optimizer_step,
    progress,
    to_device,
)


def make_optimizer(model, cfg: Training):
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def cyclic_lr(step: int, total: int, peak: float) -> float:
    """Triangular one-cycle schedule (Wong et al. 2020): 0 -> peak at 2/5 of training -> 0."""
    top = max(1, int(0.4 * total))
    if step <= top:
        return peak * step / top
    return peak * max(0.0, (total - step) / max(1, total - top))


def place_training_split(x: torch.Tensor, device, placement: str) -> tuple[torch.Tensor, str]:
    """(the training split where it lives while training, the placement chosen).

    ``device``: on the training device (batches are indexed there, no copies); ``pinned``: in host
    memory, each batch gathered there and copied through pinned memory asynchronously; ``auto``:
    on the device when it takes at most half of the device's free memory (always on a CPU)."""
    device = torch.device(device)
    if device.type != "cuda":
        return x.to(device), "device"
    if placement == "auto":
        free, _ = torch.cuda.mem_get_info(device)
        placement = "device" if x.numel() * x.element_size() <= free / 2 else "pinned"
    if placement == "pinned":
        return x.cpu(), "pinned"
    return x.to(device), "device"


class Compiled(torch.nn.Module):
    """``model`` run through ``torch.compile``, behind a module boundary that stays eager, so that
    the pass counters' forward and backward hooks see every call (hooks inside a compiled region
    do not all fire)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()

        compile_deterministic()  # runtime.setup leaves inductor's half of deterministic mode to here
        self.model = model
        object.__setattr__(self, "_compiled", torch.compile(model))  # not a second submodule

    def forward(self, x):
        return self._compiled(x)


def piecewise_lr(step: int, total: int, base: float, milestones, decay: float) -> float:
    """Step decay (Madry et al. 2018; Rice et al. 2020): ``base * decay^k`` after k milestones
    (fractions of training)."""
    return base * decay ** sum(step > m * total for m in milestones)


def train(model, defense: Defense, x, y, cfg: Training, *, epochs: int, seed: int, opponent=None,
          opponent_weight: float = 0.0, augmentation: str = "none", desc: str = "train",
          checkpoint: str | Path | None = None, fingerprint: str = "", max_steps: int | None = None,
          log=print) -> dict:
    """Train ``model`` in place with ``defense``; returns loss history, wall time and compute.

    ``x``/``y`` is the training split, on the model's device or (placement ``pinned``) in host
    memory. Each batch is augmented (``augmentation``: none | crop | crop_flip, on the device,
    from the seeded generator). ``opponent`` (``opponent(x, y, keys, gen) -> x_opp``, e.g.
    :class:`doracle.games.at.attackers.Opponent`) perturbs the batch as the attacker mixture does,
    and the mixture term is added to the defense's whole loss: ``defense_loss + w * CE(f(x_opp), y)``
    with ``w = opponent_weight`` (``w = 0``: exactly the defense's own update); the passes through
    its models are counted too.

    ``max_steps``: stop after this many optimiser steps, part-way through the last epoch (a budget
    matched to a count of passes that is not a whole number of epochs); the lr schedules span
    those steps.

    ``cfg`` also holds the efficiency switches: ``precision`` (bf16 autocast), ``channels_last``
    and ``compile``. The inner loop never waits for the device: the loss is summed on the device
    and checked for non-finite values once per epoch.

    With ``checkpoint`` the run is preemption-safe (:mod:`doracle.defenses.resume`): its whole
    state is saved there after every epoch and, on SIGTERM/SIGUSR1, after the current batch (then
    :class:`~doracle.defenses.resume.Preempted` is raised); a later call with the same
    ``fingerprint`` resumes exactly where it stopped. The caller removes the file once the result
    is saved.
    """

    device = module_device(model)
    if cfg.precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"training.precision: bf16 is not supported by {torch.cuda.get_device_name(device)}; "
                          "use fp32 (or ask for a newer GPU: resources.*.gpu_model / constraint)")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    opt = defense.make_optimizer(model, make_optimizer(model, cfg))
    schedule = defense.lr_schedule or cfg.lr_schedule
    steps_per_epoch = (len(x) + cfg.batch_size - 1) // cfg.batch_size
    total_steps = epochs * steps_per_epoch
    if max_steps is not None:
        total_steps = min(total_steps, max_steps)
        epochs = min(epochs, -(-total_steps // steps_per_epoch))
    use_opp = opponent is not None and opponent_weight > 0
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    net = Compiled(model) if cfg.compile else model
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16")
    n = len(x)
    ckpt = Path(checkpoint) if checkpoint else None
    loop = {"epoch": 0, "batch": 0, "perm": None, "total": 0.0, "batches": 0, "step": 0, "history": [],
            "passes": [0, 0], "seconds": 0.0}
    model.train()
    if ckpt is not None:
        loop = resume.load(ckpt, fingerprint=fingerprint, model=model, opt=opt, defense=defense, gen=gen,
                           log=log) or loop
    t0 = time.perf_counter() - loop["seconds"]
    counter = PassCounter([net, *(getattr(opponent, "models", []) if use_opp else [])])
    counter.forward, counter.backward = loop["passes"]
    # the epoch's loss sum, kept on the device (float64 where it exists, as a Python float would be)
    acc_dtype = torch.float32 if device.type == "mps" else torch.float64
    total = torch.tensor(loop["total"], dtype=acc_dtype, device=device)

    def flush(epoch):
        loop["total"] = float(total)  # the epoch's one wait for the device
        if not math.isfinite(loop["total"]):
            raise TrainingDiverged(f"{desc}: the training loss became {loop['total']} in epoch {epoch + 1} (lower "
                                   "training.lr, or use training.precision: fp32); nothing of this epoch was saved")

    def save():
        loop.update(passes=[counter.forward, counter.backward], seconds=time.perf_counter() - t0)
        resume.save(ckpt, fingerprint=fingerprint, model=model, opt=opt, defense=defense, gen=gen, loop=loop)

    # signals are only taken over when there is a state to save (else they keep their default)
    with counter, (resume.Preemption() if ckpt is not None else contextlib.nullcontext()) as signals:
        bar = progress(range(loop["epoch"], epochs), desc, unit="epoch", initial=loop["epoch"], total=epochs)
        for epoch in bar:
            if loop["perm"] is None:  # a new epoch (a resumed one keeps its order and position)
                loop.update(epoch=epoch, batch=0, perm=torch.randperm(n, generator=gen), total=0.0, batches=0)
                total.zero_()
            perm = loop["perm"]
            perm_x = perm.to(x.device)
            for s in range(loop["batch"] * cfg.batch_size, n, cfg.batch_size):
                if loop["step"] >= total_steps:  # max_steps: the last epoch ends part-way
                    break
                keys = perm[s:s + cfg.batch_size]
                idx = perm_x[s:s + cfg.batch_size]
                if x.device == device:
                    xb, yb = x[idx], y[idx]
                else:  # host memory: copy the batch through pinned memory without waiting
                    xb, yb = to_device(x[idx], device), to_device(y[idx], device)
                xb = augment(xb, augmentation, cfg.crop_padding, gen).contiguous(memory_format=memory_format)
                x_opp = None
                if use_opp:  # in fp32: the attacker strategies as the payoff matrix scores them
                    x_opp = opponent(xb, yb, keys, gen).contiguous(memory_format=memory_format)
                if schedule != "constant":
                    lr = (cyclic_lr(loop["step"] + 1, total_steps, cfg.lr) if schedule == "cyclic" else
                          piecewise_lr(loop["step"] + 1, total_steps, cfg.lr, cfg.lr_milestones, cfg.lr_decay))
                    for g in opt.param_groups:
                        g["lr"] = lr

                def closure(xb=xb, yb=yb, x_opp=x_opp):
                    opt.zero_grad(set_to_none=True)
                    with autocast:
                        loss = defense.loss(net, xb, yb, gen)
                        if x_opp is not None:
                            loss = loss + opponent_weight * F.cross_entropy(net(x_opp), yb)
                    loss.backward()
                    return loss

                loss = optimizer_step(opt, closure)
                total += loss.detach()
                loop["step"] += 1
                loop["batches"] += 1
                loop["batch"] += 1
                if signals is not None and signals.requested:
                    flush(epoch)
                    save()
                    raise resume.Preempted(f"{desc}: {signals.requested} received; state saved to {ckpt} at "
                                           f"epoch {epoch + 1}, batch {loop['batch']}: rerun the job to resume")
            flush(epoch)
            loop["history"].append(loop["total"] / max(loop["batches"], 1))
            loop.update(epoch=epoch + 1, batch=0, perm=None)
            bar.set_postfix(loss=f"{loop['history'][-1]:.4f}")
            if ckpt is not None:
                save()
    bar.close()
    # one line in the job's log (the bar above is drawn on terminals only)
    print(f"{desc}: trained {epochs} epochs, final loss {loop['history'][-1]:.4f}" if loop["history"] else
          f"{desc}: trained 0 epochs", file=sys.stderr, flush=True)
    model.eval()
    if cfg.channels_last:
        model.to(memory_format=torch.contiguous_format)  # saved and evaluated like any model
    return {"loss_history": loop["history"], "train_seconds": time.perf_counter() - t0, "epochs": epochs, "steps": loop["step"],
            "lr_schedule": schedule, "method": defense.stats(), "compute": counter.to_json(),
            "augmentation": augmentation, "precision": cfg.precision, "channels_last": cfg.channels_last,
            "compile": cfg.compile}


@torch.no_grad()
def accuracy(model, x, y, batch_size: int = 1024) -> float:
    was = model.training
    model.eval()
    device = module_device(model)
    correct = sum(int((model(to_device(x[s:s + batch_size], device)).argmax(1)
                       == to_device(y[s:s + batch_size], device)).sum())
                  for s in range(0, len(x), batch_size))
    model.train(was)
    return correct / max(len(x), 1)
