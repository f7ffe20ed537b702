"""DO-GAN against the base GAN at equal total compute, on the embedded digits data.

    python benchmarks/bench_gan.py [--seeds 0 1 2] [--params params-gan.yaml] [--json out.json]

For each seed, runs the real GAN pipeline (``snakemake -c2`` in a throw-away project whose
params.yaml is the params file with that seed) and reads its metrics.json: FID and classes covered (in the
reference classifier's features) of the deployed DO generator mixture, of the base GAN trained
with the same budget in player-epochs (a warm-up epoch trains both players, a best-response epoch
one), and of the warm-up generator g000 (the DO run's starting point). Prints mean ± sd over
seeds, the ratios DO / base GAN measured in the same run, and both models' measured passes and
wall seconds. docs/performance.md records a run.
"""

from __future__ import annotations

import argparse
import json
import statistics as st
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, new_project, sh  # noqa: E402
from doracle.artifacts import timing_of  # noqa: E402

KEYS = ("fid", "classes_covered", "inception_score", "coverage")


def run_seed(base: dict, seed: int, tmp: Path) -> dict:
    params = {**base, "seed": seed, "experiment": f"gan-seed{seed}"}
    proj = new_project(tmp / f"seed{seed}", params)
    wall, _ = sh(["snakemake", "-c2", "-q"], proj)
    m = json.loads((proj / f"results/gan-seed{seed}/metrics.json").read_text())
    out = {name: {k: m["models"][name][k] for k in KEYS} | {"passes": m["models"][name]["compute"]["passes"],
                                                             "wall_seconds": timing_of(m, "models", name, "compute", "wall_seconds")}
           for name in ("do_mixture", "base_gan", "g000")}
    out["members"] = m["models"]["do_mixture"]["members"]
    out["fid_real_vs_real"] = m["fid_real_vs_real"]
    out["pipeline_seconds"] = wall
    out["budget"] = m["budget"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--params", default=str(ROOT / "params-gan.yaml"))
    ap.add_argument("--set", default="{}", help="JSON merged into the params (e.g. a shorter budget for tests)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    from common import merge

    base = merge(yaml.safe_load(Path(args.params).read_text()), json.loads(args.set))
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            runs[seed] = run_seed(base, seed, Path(tmp))
            r = runs[seed]
            print(f"seed {seed}: DO mixture FID {r['do_mixture']['fid']:.2f} ({r['do_mixture']['classes_covered']} "
                  f"classes), base GAN FID {r['base_gan']['fid']:.2f} ({r['base_gan']['classes_covered']} classes), "
                  f"{r['pipeline_seconds']:.0f} s", file=sys.stderr, flush=True)

    def vals(model, key):
        return [runs[s][model][key] for s in args.seeds]

    def ms(model, key):
        v = vals(model, key)
        return st.mean(v), (st.stdev(v) if len(v) > 1 else 0.0)

    summary = {model: {k: dict(zip(("mean", "sd"), ms(model, k), strict=True)) for k in (*KEYS, "passes")}
               for model in ("do_mixture", "base_gan", "g000")}
    ratio = {k: [runs[s]["do_mixture"][k] / runs[s]["base_gan"][k] for s in args.seeds] for k in ("fid", "passes")}
    b = runs[args.seeds[0]]["budget"]
    print(f"digits, {b['do_player_epochs']} player-epochs each (base GAN: {b['base_gan_epochs']} epochs), "
          f"seeds {args.seeds} (mean ± sd)")
    print("| model | FID ↓ | classes covered | IS | coverage | passes (M) |")
    print("|---|---|---|---|---|---|")
    for model, label in (("do_mixture", "DO-GAN mixture"), ("base_gan", "base GAN"), ("g000", "warm-up generator g000")):
        s = summary[model]
        print(f"| {label} | {s['fid']['mean']:.1f} ± {s['fid']['sd']:.1f} | {s['classes_covered']['mean']:.1f} ± "
              f"{s['classes_covered']['sd']:.1f} | {s['inception_score']['mean']:.2f} ± {s['inception_score']['sd']:.2f} | "
              f"{s['coverage']['mean']:.2f} ± {s['coverage']['sd']:.2f} | {s['passes']['mean'] / 1e6:.2f} |")
    print(f"\nFID ratio DO / base GAN per seed: {', '.join(f'{r:.2f}' for r in ratio['fid'])}; passes ratio: "
          f"{', '.join(f'{r:.2f}' for r in ratio['passes'])}")
    better = sum(r < 1 for r in ratio["fid"])
    print(f"DO-GAN's mixture has the lower FID in {better} of {len(args.seeds)} seeds.")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "summary": summary, "ratio": ratio}, indent=1))


if __name__ == "__main__":
    main()
