"""DO-GAN against the base GAN at equal budget, on the embedded digits data: paired differences with intervals.

    python bench/bench_gan.py [--seeds 0 1 2 3 4] [--variant-seeds 0 1 2] [--params params-gan.yaml]
                                   [--set JSON] [--json out.json]

For each seed, runs the real GAN pipeline (``snakemake -c2`` in a throw-away project whose
params.yaml is the params file with that seed) and reads its metrics.json and its evaluation
files. The DO generator mixture and the base GAN (ordinary GAN training with the same budget in
player-epochs) are scored on the same real images and the same latents, resampled alike, so each
seed gives a **paired difference** DO mixture − base GAN with its bootstrap 95% interval, for FID,
recall, coverage and classes covered (doracle.evaluation.intervals), and the FID difference to
``base_gan_passes``, the base GAN trained for as many counted passes as the whole DO run. Printed: per seed and
variant the differences with their intervals and verdicts, each model's counted passes, and the
mean difference over seeds (± sd). Variants, on ``--variant-seeds``: the frozen-opponent oracle
(``gan.oracle: frozen``) and fictitious play instead of the LP (``do.meta_solver:
fictitious_play``). docs/performance.md records a run.
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
from common import ROOT, merge, new_project, sh  # noqa: E402
from doracle.evaluation.intervals import paired_difference  # noqa: E402

#: the metrics compared (FID: lower is better; the others: higher is better)
METRICS = ("fid", "recall", "coverage", "classes_covered")
VARIANTS = {"default": {}, "frozen oracle": {"gan": {"oracle": "frozen"}},
            "fictitious play": {"do": {"meta_solver": "fictitious_play"}}}


def _replicates(model: dict, metric: str) -> list:
    return model["fid_bootstrap"] if metric == "fid" else model.get("bootstrap_replicates", {}).get(metric, [])


def run_seed(base: dict, seed: int, tmp: Path, name: str) -> dict:
    exp = f"gan-{name.replace(' ', '-')}-seed{seed}"
    proj = new_project(tmp / exp, {**base, "seed": seed, "experiment": exp})
    wall, _ = sh(["snakemake", "-c2", "-q"], proj)
    res = proj / "results" / exp
    m = json.loads((res / "metrics.json").read_text())
    do = json.loads((res / "evaluation/do/do_mixture.json").read_text())["models"]["do_mixture"]
    gan = json.loads((res / "evaluation/baselines/base_gan.json").read_text())["models"]["base_gan"]
    gan_p = json.loads((res / "evaluation/baselines/base_gan_passes.json").read_text())["models"]["base_gan_passes"]
    out = {"seed": seed, "pipeline_seconds": wall, "budget": m["budget"],
           "members": do["members"], "probs": do["probs"],
           "exploitability": m["double_oracle"]["exploitability"],
           "exploitability_stderr": m["double_oracle"]["exploitability_stderr"],
           "passes": {k: m["models"][k]["compute"]["passes"] for k in ("do_mixture", "base_gan", "base_gan_passes")},
           "base_gan_passes_epochs": m["budget"]["base_gan_passes"]["epochs"],
           "do_mixture": {k: do[k] for k in METRICS}, "base_gan": {k: gan[k] for k in METRICS},
           "base_gan_passes": {k: gan_p[k] for k in METRICS},
           "difference": {k: paired_difference(do[k], _replicates(do, k), gan[k], _replicates(gan, k))
                          for k in METRICS},
           "difference_passes": {k: paired_difference(do[k], _replicates(do, k), gan_p[k], _replicates(gan_p, k))
                                 for k in METRICS}}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds of the default settings")
    ap.add_argument("--variant-seeds", type=int, nargs="*", default=[0, 1, 2],
                    help="seeds of each variant (frozen oracle, fictitious play); none: skip the variants")
    ap.add_argument("--params", default=str(ROOT / "params-gan.yaml"))
    ap.add_argument("--set", default="{}", help="JSON merged into the params (e.g. a shorter budget for tests)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    base = merge(yaml.safe_load(Path(args.params).read_text()), json.loads(args.set))
    plan = [("default", s) for s in args.seeds] + [(v, s) for v in list(VARIANTS)[1:] for s in args.variant_seeds]
    runs: dict[str, dict[int, dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, seed in plan:
            r = runs.setdefault(name, {})[seed] = run_seed(merge(base, VARIANTS[name]), seed, Path(tmp), name)
            d = r["difference"]["fid"]
            print(f"{name} seed {seed}: FID DO mixture {r['do_mixture']['fid']:.1f}, base GAN {r['base_gan']['fid']:.1f}, "
                  f"difference {d['difference']:+.1f} [{d['interval'][0]:+.1f}, {d['interval'][1]:+.1f}] "
                  f"({r['pipeline_seconds']:.0f} s)", file=sys.stderr, flush=True)

    def cell(d: dict, digits: int) -> str:
        lo, hi = d["interval"]
        return f"{d['difference']:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"

    digits = {"fid": 1, "recall": 3, "coverage": 3, "classes_covered": 1}
    b = runs["default"][args.seeds[0]]["budget"]
    print(f"digits, DO {b['do_player_epochs']} player-epochs, base GAN {b['base_gan_epochs']} epochs "
          f"({b['base_gan_player_epochs']} player-epochs). Paired differences DO mixture − base GAN on the same "
          "real images and latents, bootstrap 95% intervals (FID: negative favours DO; the others: positive does)")
    print("| variant | seed | FID | recall | coverage | classes covered | σ_G | exploitability | passes DO / base | "
          "FID vs base GAN at equal passes (its epochs) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    summary = {}
    for name, by_seed in runs.items():
        for seed, r in by_seed.items():
            sigma = ", ".join(f"{i} {p:.2f}" for i, p in zip(r["members"], r["probs"], strict=True))
            print(f"| {name} | {seed} | " + " | ".join(cell(r["difference"][k], digits[k]) for k in METRICS) +
                  f" | {sigma} | {r['exploitability']:.3f} ± {r['exploitability_stderr']:.3f} | "
                  f"{r['passes']['do_mixture'] / r['passes']['base_gan']:.2f} | "
                  f"{cell(r['difference_passes']['fid'], 1)} ({r['base_gan_passes_epochs']}) |")
        summary[name] = {}
        for k in (*METRICS, "fid_passes"):
            key, metric = ("difference_passes", "fid") if k == "fid_passes" else ("difference", k)
            diffs = [r[key][metric]["difference"] for r in by_seed.values()]
            verdicts = [r[key][metric]["verdict"] for r in by_seed.values()]
            summary[name][k] = {"mean": st.mean(diffs), "sd": st.stdev(diffs) if len(diffs) > 1 else 0.0,
                                "do_better": sum(v == ("lower" if metric == "fid" else "higher") for v in verdicts),
                                "do_worse": sum(v == ("higher" if metric == "fid" else "lower") for v in verdicts),
                                "seeds": len(diffs)}
    print("\nMean difference over seeds (± sd); in how many seeds the interval favours DO / the base GAN:")
    cols = (*METRICS, "fid_passes")
    digits["fid_passes"] = 1
    print("| variant | seeds | " + " | ".join(METRICS) + " | FID vs base GAN at equal passes |")
    print("|---|---|" + "---|" * len(cols))
    for name, s in summary.items():
        print(f"| {name} | {len(runs[name])} | " + " | ".join(
            f"{s[k]['mean']:+.{digits[k]}f} ± {s[k]['sd']:.{digits[k]}f} (DO {s[k]['do_better']}, base "
            f"{s[k]['do_worse']})" for k in cols) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": runs, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
