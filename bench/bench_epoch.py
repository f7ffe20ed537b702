"""Epoch time of adversarial training at CIFAR-10 scale on a GPU (synthetic CIFAR-shaped data).

    python bench/bench_epoch.py [--device cuda] [--images 50000] [--batch 512]
        [--methods fgsm_rs pgd_at] [--precision bf16] [--no-channels-last] [--peak-tflops X]
        [--json out.json]

PreActResNet-18 trained by doracle's training loop (``doracle.defenses.training.train``, the
loop every job runs, with augmentation crop_flip on the device, the training split on the
device) for one epoch of ``--images`` synthetic 3x32x32 images, per method (FGSM-RS; PGD-10 with
step 2/255). Prints images/s, the epoch time, the projected time of 15 FGSM-RS epochs (goal on an
H100-class GPU: under one minute) and the fraction of the GPU's bf16 dense peak reached, from the
FLOPs of one training step counted by ``torch.utils.flop_counter`` (attack passes included) and
the peak of the GPU (``--peak-tflops``, else a table of known GPUs). A warm-up epoch on a few
batches precedes each timing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from bench_at_step import doracle_loop

# dense bf16 tensor-core peaks (TFLOP/s) of the data-sheets
PEAKS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40S": 362.0, "A10": 125.0, "V100": 125.0}


def peak_for(name: str) -> float | None:
    return next((v for k, v in PEAKS.items() if k in name), None)


def step_flops(model, x, y, method: str, pgd_steps: int, precision: str, channels_last: bool) -> float:
    """FLOPs of one training step of ``method`` on batch ``x`` (attack and update)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        doracle_loop(model, x, y, method=method, pgd_steps=pgd_steps, batch=len(x), lr=0.1, gen_seed=0,
                     precision=precision, channels_last=channels_last, augmentation="crop_flip")
    return float(counter.get_total_flops())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--images", type=int, default=50000)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--methods", nargs="+", default=["fgsm_rs", "pgd_at"], choices=["fgsm_rs", "pgd_at"])
    ap.add_argument("--pgd-steps", type=int, default=10)
    ap.add_argument("--precision", choices=["fp32", "bf16"], default="bf16")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--peak-tflops", type=float)
    ap.add_argument("--arch", default="doracle_preact_resnet18", help="another model (smoke tests on a CPU)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    from doracle import models

    device = torch.device(args.device)
    cl = not args.no_channels_last
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    peak = args.peak_tflops or peak_for(name)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(args.images, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (args.images,), generator=g).to(device)

    def fresh():
        torch.manual_seed(0)
        m = models.create(args.arch, num_classes=10, in_chans=3, img_size=32,
                          mean=[0.49, 0.48, 0.45], std=[0.25, 0.24, 0.26]).to(device)
        return m

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    print(f"{name}, {args.arch}, {args.images} images 3x32x32, batch {args.batch}, {args.precision}"
          f"{', channels_last' if cl else ''}, peak {peak or '?'} TFLOP/s")
    print(f"{'method':<10} {'img/s':>9} {'epoch s':>8} {'15 ep s':>8} {'TFLOP/s':>8} {'of peak':>8}")
    results = {}
    for method in args.methods:
        kw = {"method": method, "pgd_steps": args.pgd_steps, "batch": args.batch, "lr": 0.1, "gen_seed": 0,
              "precision": args.precision, "channels_last": cl, "augmentation": "crop_flip"}
        warm = min(len(x), 4 * args.batch)
        doracle_loop(fresh(), x[:warm], y[:warm], **kw)
        flops = step_flops(fresh(), x[:args.batch], y[:args.batch], method, args.pgd_steps, args.precision, cl)
        m = fresh()
        sync()
        t0 = time.perf_counter()
        doracle_loop(m, x, y, **kw)
        sync()
        sec = time.perf_counter() - t0
        steps = (len(x) + args.batch - 1) // args.batch
        tflops = flops * steps / sec / 1e12
        r = {"images_per_s": len(x) / sec, "epoch_seconds": sec, "fifteen_epochs_seconds": 15 * sec,
             "tflops": tflops, "fraction_of_peak": tflops / peak if peak else None, "flops_per_step": flops}
        results[method] = r
        label = f"pgd{args.pgd_steps}_at" if method == "pgd_at" else method
        frac = f"{r['fraction_of_peak']:.1%}" if peak else "?"
        print(f"{label:<10} {r['images_per_s']:>9.0f} {sec:>8.1f} {15 * sec:>8.1f} {tflops:>8.1f} {frac:>8}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "device": name, "peak_tflops": peak, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
