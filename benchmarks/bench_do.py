"""The seeds' headline question on the embedded digits data: does the DO mixture beat adversarial
training, at DO's natural budget and at equal total compute?

    python benchmarks/bench_do.py [--seeds 0 1 2] [--variants natural warm equal equal_warm] [--json out.json]

For every seed and variant the real pipeline runs (Snakemake, -c2) in a throw-away project with
params.yaml changed only as the variant says; every model then goes through the same full
evaluation suite (worst case over FGSM, PGD, ARC, per-member PGD, AutoAttack). Variants:

* ``natural``: params.yaml's DO (its iterations and epochs), cold-started best responses;
* ``warm``: the same with ``do.defender.warm_start: true`` (the authors' code warm-starts);
* ``equal``: DO shrunk to about PGD-AT's total compute (2 iterations, 1 epoch per defender best
  response and for the base model, PGD-3 attacker best responses); the measured ratio of passes
  is printed, so the match can be checked;
* ``equal_warm``: ``equal`` with warm start.

The baselines (ERM, PGD-AT, TRADES, each trained for training.epochs) run in the natural variant.
Prints mean ± sd over seeds of clean and worst-case robust accuracy, and each model's total
compute (per-example forward + backward passes and jobs' wall seconds, as metrics.json records
them) relative to PGD-AT's in the same seed.
"""

from __future__ import annotations

import argparse
import json
import statistics as st
import sys
import tempfile
from pathlib import Path

import yaml

from common import ROOT, new_project, sh
from doracle.artifacts import timing_of

EQUAL = {"base": {"epochs": 1}, "do": {"iterations": 2, "defender": {"epochs": 1},
                                       "attacker": {"attack": {"steps": 3, "rel_step_size": 0.5}}}}
VARIANTS = {
    "natural": {"baselines": {"methods": ["erm", "pgd_at", "trades"]}},
    "warm": {"do": {"defender": {"warm_start": True}}},
    "equal": EQUAL,
    "equal_warm": {**EQUAL, "do": {**EQUAL["do"], "defender": {"epochs": 1, "warm_start": True}}},
}


def merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--json", help="also write every number to this file")
    args = ap.parse_args()
    base = yaml.safe_load(Path(args.params).read_text())
    rows: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            pgd_at = None
            # the natural run always comes first: it trains the baselines (and PGD-AT's compute)
            for variant in ["natural"] + [v for v in args.variants if v != "natural"]:
                params = merge(merge(base, {"baselines": {"methods": ["pgd_at"]}}), VARIANTS[variant])
                params = merge(params, {"seed": seed, "experiment": f"{variant}-s{seed}"})
                proj = new_project(Path(tmp) / f"{variant}-{seed}", params)
                wall, _ = sh(["snakemake", "-c2", "--quiet"], proj)
                m = json.loads((proj / f"results/{variant}-s{seed}/metrics.json").read_text())
                print(f"seed {seed} {variant}: {wall:.0f} s, DO status {m['double_oracle']['status']}",
                      file=sys.stderr, flush=True)
                models = m["models"]
                pgd_at = pgd_at or models["pgd_at"]["compute"]
                labels = {f"{n} ({variant})": n for n in ("do_mixture", "do_best_member")
                          if variant in args.variants}
                if variant == "natural":
                    labels.update({n: n for n in ("erm", "pgd_at", "trades")})
                for label, name in labels.items():
                    r, c = models[name], models[name]["compute"]
                    row = rows.setdefault(label, {k: [] for k in ("clean", "worst", "passes", "ratio", "wall")})
                    row["clean"].append(r["clean_accuracy"])
                    row["worst"].append(r["robust_accuracy"]["worst_case"])
                    row["passes"].append(c["passes"] / 1e6)
                    row["ratio"].append(c["passes"] / pgd_at["passes"])
                    row["wall"].append(timing_of(m, "models", name, "compute", "wall_seconds"))

    def ms(v, scale=100.0, digits=1):
        sd = st.stdev(v) if len(v) > 1 else 0.0
        return f"{scale * st.mean(v):.{digits}f} ± {scale * sd:.{digits}f}"

    tm = base["threat_model"]
    print(f"digits, {tm['norm']} eps {tm['eps']}, seeds {args.seeds}, mean ± sd; worst case over the whole "
          "evaluation suite; compute = every job that produced the model")
    print("| model | clean % | worst-case robust % | passes (M) | passes / PGD-AT's | jobs' wall s |")
    print("|---|---|---|---|---|---|")
    for label, r in rows.items():
        print(f"| {label} | {ms(r['clean'])} | {ms(r['worst'])} | {ms(r['passes'], 1, 2)} | "
              f"{ms(r['ratio'], 1, 2)} | {ms(r['wall'], 1, 0)} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
