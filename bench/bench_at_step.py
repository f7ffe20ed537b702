"""Throughput of one adversarial-training step: doracle's training loop against a bare PyTorch loop.

    python bench/bench_at_step.py [--device cpu|cuda] [--arch doracle_preact_resnet18]
        [--batch 128] [--size 32] [--steps 30] [--repeats 3] [--precision fp32|bf16]
        [--channels-last] [--methods pgd_at fgsm_rs] [--pgd-steps 10] [--threads 1] [--json out.json]

For each method (PGD-k AT with step 2/255 at eps 8/255, FGSM-RS with step 1.25 eps from a random
start) both loops train the same model (same initial weights) on the same CIFAR-shaped batches
for ``--steps`` optimizer steps:

* doracle: ``doracle.defenses.training.train`` with the registered defense, as every job runs it
  (pass counting, the defense's attack through the mixture interface, the sync-free loss sum);
* bare: a hand-written loop (the attack written out inline, ``model.eval()`` while attacking as
  doracle does, SGD step), no bookkeeping.

Repeats alternate between the two and the median images/s is reported with the ratio
doracle / bare (goal: >= 0.95). A warm-up run of each precedes the timing.
"""

from __future__ import annotations

import argparse
import json
import statistics as st
import sys
import time

import torch
import torch.nn.functional as F


def bare_loop(model, x, y, *, method, eps, alpha, pgd_steps, batch, lr, gen_seed, precision, channels_last):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    device = x.device
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    gen = torch.Generator().manual_seed(gen_seed)
    for s in range(0, len(x), batch):
        xb, yb = x[s:s + batch].contiguous(memory_format=fmt), y[s:s + batch]
        delta = ((torch.rand(xb.shape, generator=gen) * 2 - 1) * eps).to(device)
        delta = (xb + delta).clamp(0, 1) - xb
        steps, step = (pgd_steps, alpha) if method == "pgd_at" else (1, 1.25 * eps)
        model.eval()
        for _ in range(steps):
            delta.requires_grad_(True)
            with autocast:
                loss = F.cross_entropy(model(xb + delta), yb)
            (g,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + step * g.sign()).clamp(-eps, eps)
            delta = (xb + delta).clamp(0, 1) - xb
        model.train()
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(model(xb + delta), yb)
        loss.backward()
        opt.step()


def doracle_loop(model, x, y, *, method, pgd_steps, batch, lr, gen_seed, precision, channels_last,
                 augmentation="none"):
    from doracle import config
    from doracle.defenses import make_defense
    from doracle.defenses.training import train

    attack = ({"name": "pgd", "steps": pgd_steps, "rel_step_size": 0.25} if method == "pgd_at" else
              {"name": "fgsm", "steps": 1, "rel_step_size": 1.25})
    p = config.validate({"threat_model": {"eps": "8/255"},
                         "training": {"optimizer": "sgd", "lr": lr, "momentum": 0.9, "weight_decay": 5e-4,
                                      "batch_size": batch, "lr_schedule": "constant", "precision": precision,
                                      "channels_last": channels_last},
                         "defenses": {method: {"attack": attack, "lr_schedule": "constant"}}})
    train(model, make_defense(method, p), x, y, p.training, epochs=1, seed=gen_seed, desc=method,
          augmentation=augmentation, log=lambda *a: None)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--arch", default="doracle_preact_resnet18")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30, help="optimizer steps per timed run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--pgd-steps", type=int, default=10)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--methods", nargs="+", default=["pgd_at", "fgsm_rs"], choices=["pgd_at", "fgsm_rs"])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (doracle's jobs use params.threads)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    from doracle import models

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    n = args.batch * args.steps
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 3, args.size, args.size, generator=g).to(device)
    y = torch.randint(0, 10, (n,), generator=g).to(device)
    eps = 8 / 255

    def fresh():
        torch.manual_seed(0)
        m = models.create(args.arch, num_classes=10, in_chans=3, img_size=args.size, mean=[0.5] * 3,
                          std=[0.25] * 3).to(device)
        return m.to(memory_format=torch.channels_last) if args.channels_last else m

    def timed(fn, **kw):
        m = fresh()
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(m, x, y, batch=args.batch, lr=0.1, gen_seed=0, precision=args.precision,
           channels_last=args.channels_last, pgd_steps=args.pgd_steps, **kw)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return n / (time.perf_counter() - t0)

    print(f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"{torch.get_num_threads()} threads, {args.arch}, batch {args.batch}, {args.size}x{args.size}, "
          f"{args.steps} steps x {args.repeats} repeats, {args.precision}"
          f"{', channels_last' if args.channels_last else ''}")
    print(f"{'method':<10} {'doracle img/s':>14} {'bare img/s':>11} {'ratio':>7}")
    results = {}
    for method in args.methods:
        bare_kw = {"method": method, "eps": eps, "alpha": 2 / 255}
        timed(bare_loop, **bare_kw)  # warm-up (allocator, kernels, first-call costs)
        timed(doracle_loop, method=method)
        ours, bare = [], []
        for _ in range(args.repeats):
            bare.append(timed(bare_loop, **bare_kw))
            ours.append(timed(doracle_loop, method=method))
        r = {"doracle_images_per_s": st.median(ours), "bare_images_per_s": st.median(bare),
             "ratio": st.median(ours) / st.median(bare), "doracle_runs": ours, "bare_runs": bare}
        results[method] = r
        label = f"pgd{args.pgd_steps}_at" if method == "pgd_at" else method
        print(f"{label:<10} {r['doracle_images_per_s']:>14.1f} {r['bare_images_per_s']:>11.1f} {r['ratio']:>7.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "device": str(device), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
