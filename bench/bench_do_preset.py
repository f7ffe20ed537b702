"""One full DO-AT run of a cluster preset, shortened, on synthetic data: each job's time.

    python bench/bench_do_preset.py [--preset configs/cifar10.yaml] [--device cuda|cpu]
        [--images 12000] [--epochs 2] [--iterations 2] [--eval-examples 500] [--cores 2]
        [--baselines pgd_at fgsm_rs] [--light-evaluation] [--arch NAME] [--json out.json]

The preset's settings (model, attacks, schedule, augmentation, on-the-fly attackers, efficiency
switches, evaluation suite) are kept; only the sizes shrink: ``--images`` synthetic images in the
data set's real on-disk format (written by ``doracle.data.formats``, read by the real reader, so
it runs offline), ``--epochs`` per training job, ``--iterations`` DO iterations, the evaluation on
``--eval-examples`` test images (``--light-evaluation``: at most 5 steps and one restart per
attack, AutoAttack APGD-CE + APGD-T with 10 iterations instead of the standard version). The
real workflow runs (``snakemake -c<cores>``) in a
throw-away project; each job's wall seconds come from its Snakemake benchmark file.

On a GPU the defaults aim at about ten minutes for CIFAR-10. A CPU cannot run PreActResNet-18 at
any useful size (about 15 images/s forward + backward on one core); to check the run and see the
jobs' breakdown there: ``--device cpu --arch doracle_cnn_small --images 1200 --epochs 1
--iterations 2 --eval-examples 64 --light-evaluation --baselines pgd_at``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import ROOT, new_project, sh

SHAPES = {"cifar10": "cifar10", "svhn": "svhn", "mnist": "mnist", "tinyimagenet": "tinyimagenet"}


def shortened(preset: dict, args) -> dict:
    p = dict(preset)
    p["device"] = args.device
    p["threads"] = 1 if args.device == "cpu" else preset.get("threads", 1)
    p["data"] = {**preset["data"], "root": "data/raw", "download": False}
    p["training"] = {**preset["training"], "epochs": args.epochs}
    p["base"] = {**preset["base"], "epochs": args.epochs}
    p["do"] = {**preset["do"], "iterations": args.iterations, "defender": {**preset["do"]["defender"], "epochs": None}}
    p["baselines"] = {**preset["baselines"], "methods": args.baselines, "epochs": None}
    ev = dict(preset["evaluation"])
    ev["max_examples"] = args.eval_examples
    if args.light_evaluation:
        ev["autoattack"] = {**ev["autoattack"], "version": "custom", "attacks": ["apgd-ce", "apgd-t"],
                            "apgd_iterations": 10, "target_classes": 2}
        ev["attacks"] = {k: {**a, "steps": min(a["steps"], 5), "restarts": 1} for k, a in ev["attacks"].items()}
        ev["eps_curve"] = {**ev["eps_curve"], "attack": {**ev["eps_curve"]["attack"], "steps": 5}}
    p["evaluation"] = ev
    if args.arch:
        p["model"] = {"arch": args.arch}
    return p


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default=str(ROOT / "configs" / "cifar10.yaml"))
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--images", type=int, default=12000, help="synthetic images (train + test files)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--eval-examples", type=int, default=500)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--baselines", nargs="+", default=["pgd_at", "fgsm_rs"])
    ap.add_argument("--light-evaluation", action="store_true",
                    help="at most 5 steps and 1 restart per attack, AutoAttack APGD-CE + APGD-T with 10 iterations")
    ap.add_argument("--arch", help="another model than the preset's (e.g. doracle_cnn_small on a CPU)")
    ap.add_argument("--keep", help="keep the project in this directory (default: a temporary one)")
    ap.add_argument("--json")
    args = ap.parse_args(argv)

    sys.path.insert(0, str(ROOT / "src"))
    from doracle import config
    from doracle.compute import wall_seconds
    from doracle.data.formats import write_synthetic

    preset = yaml.safe_load(Path(args.preset).read_text())
    params = shortened(preset, args)
    config.validate(params, "shortened preset")
    exp = params["experiment"]
    with tempfile.TemporaryDirectory() as tmp:
        proj = Path(args.keep) if args.keep else Path(tmp)
        new_project(proj, params)
        n_test = args.images // 6
        write_synthetic(params["data"]["dataset"], proj / "data" / "raw", args.images - n_test, n_test)
        t0 = time.perf_counter()
        sh(["snakemake", f"-c{args.cores}"], proj)
        total = time.perf_counter() - t0
        jobs = {}
        for tsv in sorted((proj / "benchmarks" / exp).rglob("*.tsv")):
            jobs[str(tsv.relative_to(proj / "benchmarks" / exp).with_suffix(""))] = wall_seconds(tsv)
        metrics = json.loads((proj / f"results/{exp}/metrics.json").read_text())
    ds = params["data"]["dataset"]
    print(f"{args.preset} shortened: {ds} synthetic, {args.images} images, {params['model']['arch']}, "
          f"{args.epochs} epochs, {args.iterations} DO iterations, device {args.device}, -c{args.cores}")
    print(f"{'job':<44} {'s':>8}")
    for name, s in jobs.items():
        print(f"{name:<44} {s:>8.1f}")
    print(f"{'total wall (snakemake)':<44} {total:>8.1f}")
    for model, r in metrics["models"].items():
        print(f"  {model:<20} clean {r['clean_accuracy']:.3f}  worst case {r['robust_accuracy']['worst_case']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "jobs": jobs, "total_seconds": total,
                                               "models": {k: {"clean": v["clean_accuracy"],
                                                              "worst_case": v["robust_accuracy"]["worst_case"]}
                                                          for k, v in metrics["models"].items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
