"""Does the DO-AT mixture beat its best member and PGD-AT, at PGD-AT's budget and at DO's own?

    python bench/bench_do.py [--seeds 0 1 2 3 4] [--variant default|search|nas] [--json out.json]

For every seed the real pipeline runs (Snakemake, -c2) in a throw-away project: params.yaml with
its seed changed, the baselines trimmed to PGD-AT and TRADES (each for training.epochs) plus the two
baselines matched to the DO run (``pgd_at_epochs``: DO's defender epochs in total; ``pgd_at_passes``:
the whole DO run's counted passes). Every model goes through the same full evaluation suite (worst
case over FGSM, PGD, ARC, per-member PGD, AutoAttack) on the same test examples.

Prints, per seed and over seeds, the DO mixture's worst-case robust accuracy minus each other
model's as paired per-example differences with bootstrap 95 % intervals (over examples; over seeds,
examples resampled within each seed and the seeds' differences averaged), the number of seeds
whose interval lies above / below 0, and each model's compute relative to PGD-AT's.

Variants (``--variant``) change params.yaml as they say: ``default`` (as it is), ``search`` (the
attacker best response also tries FGSM and Langevin: do.attacker.candidates), ``nas`` (DONAS:
defender best responses search architectures). Nothing is tuned on the test split: the variants are
fixed before any run.
"""

from __future__ import annotations

import argparse
import json
import statistics as st
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

from common import ROOT, merge, new_project, sh
from doracle.artifacts import read_json
from doracle.evaluation.intervals import paired_mean_difference

OTHERS = ("do_best_member", "pgd_at", "pgd_at_epochs", "pgd_at_passes", "trades")
VARIANTS = {
    "default": {},
    "search": {"do": {"attacker": {"candidates": {
        "fgsm": {"name": "fgsm", "steps": 1, "rel_step_size": 1.25, "restarts": 1, "random_start": True},
        "langevin": {"name": "langevin", "steps": 10, "rel_step_size": 0.25, "restarts": 1, "random_start": True}}}}},
    "nas": {"nas": {"enabled": True}},
}


def over_seeds(diffs: list[np.ndarray], seed: int = 0, resamples: int = 2000) -> dict:
    """The mean over seeds of each seed's mean per-example difference, with the interval of the same
    mean when each seed's examples are resampled (stratified by seed: the seeds are the design)."""
    rng = np.random.default_rng(seed)
    reps = np.mean([d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(1) for d in diffs], axis=0)
    return {"difference": float(np.mean([d.mean() for d in diffs])),
            "interval": [float(np.quantile(reps, 0.025)), float(np.quantile(reps, 0.975))]}


def sd(v: list[float]) -> float:
    return st.stdev(v) if len(v) > 1 else 0.0


def run_seed(tmp: Path, base: dict, variant: str, seed: int) -> dict:
    params = merge(base, VARIANTS[variant])
    params = merge(params, {"seed": seed, "experiment": f"{variant}-s{seed}",
                            "baselines": {**params["baselines"], "methods": ["pgd_at", "trades"]}})
    proj = new_project(tmp / f"{variant}-{seed}", params)
    wall, _ = sh(["snakemake", "-c2", "--quiet"], proj)
    res = proj / f"results/{variant}-s{seed}"
    m = read_json(res / "metrics.json")
    per_example = {read_json(p)["label"]: np.asarray(read_json(p)["worst_case_per_example"])
                   for p in res.glob("evaluation/**/*.json") if read_json(p).get("kind") == "evaluation"}
    print(f"seed {seed} {variant}: {wall:.0f} s, DO status {m['double_oracle']['status']}, exploitability "
          f"{m['double_oracle']['exploitability']:.4f}, mixture "
          + ", ".join(f"{i} {p:.2f}" for i, p in zip(m['models']['do_mixture']['members'],
                                                     m['models']['do_mixture']['probs'], strict=True)),
          file=sys.stderr, flush=True)
    return {"metrics": m, "per_example": per_example, "wall": wall}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--variant", default="default", choices=list(VARIANTS))
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--set", default="{}", help="JSON merged into the params first (e.g. a tiny budget, for tests)")
    ap.add_argument("--json", help="also write every number to this file")
    args = ap.parse_args()
    base = merge(yaml.safe_load(Path(args.params).read_text()), json.loads(args.set))
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            runs[seed] = run_seed(Path(tmp), base, args.variant, seed)

    tm = base["threat_model"]
    print(f"digits, {tm['norm']} eps {tm['eps']}, variant {args.variant}, seeds {args.seeds}; worst case over the "
          "whole evaluation suite, on each seed's test split; compute = every job that produced the model\n")
    print("| model | clean % | worst-case robust % | passes / PGD-AT's |")
    print("|---|---|---|---|")
    models = ("do_mixture", *OTHERS)
    summary: dict = {"variant": args.variant, "seeds": args.seeds, "models": {}, "comparisons": {}}
    for name in models:
        rs = [r["metrics"]["models"][name] for r in runs.values()]
        clean = [r["clean_accuracy"] for r in rs]
        worst = [r["robust_accuracy"]["worst_case"] for r in rs]
        ratio = [r["compute"]["passes"] / run["metrics"]["models"]["pgd_at"]["compute"]["passes"]
                 for r, run in zip(rs, runs.values(), strict=True)]
        print(f"| {name} | {100 * st.mean(clean):.1f} ± {100 * sd(clean):.1f} | {100 * st.mean(worst):.1f} ± "
              f"{100 * sd(worst):.1f} | {st.mean(ratio):.2f} |")
        summary["models"][name] = {"clean": clean, "worst_case": worst, "passes_vs_pgd_at": ratio}
    print("\nDO mixture minus each model, worst-case robust accuracy in points (paired over the same test "
          "examples; 95 % bootstrap intervals)\n")
    print("| comparison | " + " | ".join(f"seed {s}" for s in args.seeds) + " | over seeds | seeds above / below 0 |")
    print("|---|" + "---|" * len(args.seeds) + "---|---|")
    for other in OTHERS:
        per_seed, diffs = [], []
        for seed, run in runs.items():
            a, b = run["per_example"]["do_mixture"], run["per_example"][other]
            per_seed.append(paired_mean_difference(a, b, seed=seed))
            diffs.append(a - b)
        pooled = over_seeds(diffs)
        above = sum(c["verdict"] == "higher" for c in per_seed)
        below = sum(c["verdict"] == "lower" for c in per_seed)

        def fmt(c):
            return f"{100 * c['difference']:+.1f} [{100 * c['interval'][0]:+.1f}, {100 * c['interval'][1]:+.1f}]"

        print(f"| do_mixture - {other} | " + " | ".join(fmt(c) for c in per_seed) + f" | {fmt(pooled)} | "
              f"{above} / {below} |")
        summary["comparisons"][other] = {"per_seed": per_seed, "over_seeds": pooled, "above": above, "below": below}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
