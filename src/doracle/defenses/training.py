"""The shared training loop of every classifier: base model, baselines, DO defender oracle."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from doracle.compute import PassCounter
from doracle.config import Training
from doracle.defenses import resume
from doracle.defenses.base import Defense


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


def train(model, defense: Defense, x, y, cfg: Training, *, epochs: int, seed: int,
          opponents: torch.Tensor | None = None, opponent_probs=None, opponent_weight: float = 0.0,
          desc: str = "train", checkpoint: str | Path | None = None, fingerprint: str = "", log=print) -> dict:
    """Train ``model`` in place with ``defense``; returns loss history, wall time and compute.

    ``opponents`` (k, N, ...) holds k fixed perturbations of the training inputs (the attacker
    population's strategies evaluated on x). Each example of a batch draws one of them from
    ``opponent_probs`` and the loss becomes
    ``(1 - w) * defense_loss + w * CE(f(x_opp), y)`` with ``w = opponent_weight``.

    With ``checkpoint`` the run is preemption-safe (:mod:`doracle.defenses.resume`): its whole
    state is saved there after every epoch and, on SIGTERM/SIGUSR1, after the current batch (then
    :class:`~doracle.defenses.resume.Preempted` is raised); a later call with the same
    ``fingerprint`` resumes exactly where it stopped. The caller removes the file once the result
    is saved.
    """
    gen = torch.Generator(device="cpu").manual_seed(seed)
    opt = defense.make_optimizer(model, make_optimizer(model, cfg))
    schedule = defense.lr_schedule or cfg.lr_schedule
    steps_per_epoch = (len(x) + cfg.batch_size - 1) // cfg.batch_size
    total_steps = epochs * steps_per_epoch
    use_opp = opponents is not None and opponent_weight > 0 and len(opponents) > 0
    if use_opp:
        probs = torch.as_tensor(opponent_probs, dtype=torch.float32)
    n = len(x)
    ckpt = Path(checkpoint) if checkpoint else None
    loop = {"epoch": 0, "batch": 0, "perm": None, "total": 0.0, "batches": 0, "step": 0, "history": [],
            "passes": [0, 0], "seconds": 0.0}
    model.train()
    if ckpt is not None:
        loop = resume.load(ckpt, fingerprint=fingerprint, model=model, opt=opt, defense=defense, gen=gen,
                           log=log) or loop
    t0 = time.perf_counter() - loop["seconds"]
    counter = PassCounter([model])
    counter.forward, counter.backward = loop["passes"]

    def save():
        loop.update(passes=[counter.forward, counter.backward], seconds=time.perf_counter() - t0)
        resume.save(ckpt, fingerprint=fingerprint, model=model, opt=opt, defense=defense, gen=gen, loop=loop)

    # signals are only taken over when there is a state to save (else they keep their default)
    with counter, (resume.Preemption() if ckpt is not None else contextlib.nullcontext()) as signals:
        bar = tqdm(range(loop["epoch"], epochs), desc=desc, unit="epoch", mininterval=1.0,
                   initial=loop["epoch"], total=epochs)
        for epoch in bar:
            if loop["perm"] is None:  # a new epoch (a resumed one keeps its order and position)
                loop.update(epoch=epoch, batch=0, perm=torch.randperm(n, generator=gen), total=0.0, batches=0)
            perm = loop["perm"].to(x.device)
            for s in range(loop["batch"] * cfg.batch_size, n, cfg.batch_size):
                idx = perm[s:s + cfg.batch_size]
                xb, yb = x[idx], y[idx]
                x_opp = None
                if use_opp:
                    pick = torch.multinomial(probs, len(idx), replacement=True, generator=gen).to(x.device)
                    x_opp = opponents[pick, idx]
                if schedule == "cyclic":
                    for g in opt.param_groups:
                        g["lr"] = cyclic_lr(loop["step"] + 1, total_steps, cfg.lr)

                def closure(xb=xb, yb=yb, x_opp=x_opp, epoch=epoch):
                    opt.zero_grad(set_to_none=True)
                    loss = defense.loss(model, xb, yb, gen)
                    if x_opp is not None:
                        loss = (1 - opponent_weight) * loss + opponent_weight * F.cross_entropy(model(x_opp), yb)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"{desc}: non-finite training loss at epoch {epoch}")
                    loss.backward()
                    return loss

                loss = opt.step(closure)
                loop["step"] += 1
                loop["total"] += float(loss.detach())
                loop["batches"] += 1
                loop["batch"] += 1
                if signals is not None and signals.requested:
                    save()
                    raise resume.Preempted(f"{desc}: {signals.requested} received; state saved to {ckpt} at "
                                           f"epoch {epoch + 1}, batch {loop['batch']}: rerun the job to resume")
            loop["history"].append(loop["total"] / max(loop["batches"], 1))
            loop.update(epoch=epoch + 1, batch=0, perm=None)
            bar.set_postfix(loss=f"{loop['history'][-1]:.4f}")
            if ckpt is not None:
                save()
    model.eval()
    return {"loss_history": loop["history"], "train_seconds": time.perf_counter() - t0, "epochs": epochs,
            "lr_schedule": schedule, "method": defense.stats(), "compute": counter.to_json()}


@torch.no_grad()
def accuracy(model, x, y, batch_size: int = 1024) -> float:
    was = model.training
    model.eval()
    correct = sum(int((model(x[s:s + batch_size]).argmax(1) == y[s:s + batch_size]).sum())
                  for s in range(0, len(x), batch_size))
    model.train(was)
    return correct / max(len(x), 1)
