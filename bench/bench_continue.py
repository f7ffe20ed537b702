"""Is a DO defender best response with w = 0, warm-started from a PGD-AT model, PGD-AT continued?

    python bench/bench_continue.py [--seeds 0 1 2] [--base-epochs 5] [--epochs 6] [--json out.json]

For each seed, in process on the embedded digits: a PGD-AT model trained for ``--base-epochs``
(the base model, ``base.defense: pgd_at``), then continued for ``--epochs`` by the defender best
response's own training (``classifiers.fit`` with the base model as ``init``, ``pgd_at`` and the
attacker-mixture term at w = 0), against a PGD-AT run of the same total epochs from scratch. Both
are scored on the **payoff split** (never the test split) under PGD-20: their robust accuracy, and
the paired per-example difference with its bootstrap 95 % interval. The two cannot be bit-identical
(the continued run restarts Adam and its data order), so "matching" means a difference whose
interval holds 0, or one that is small against the seeds' spread.
"""

from __future__ import annotations

import argparse
import json
import statistics as st
from pathlib import Path

import torch

from common import ROOT
from doracle import config, data, runtime
from doracle.attacks import run_attack
from doracle.config import AttackSpec
from doracle.data import load as load_dataset
from doracle.evaluation.intervals import paired_mean_difference
from doracle.games import classifiers
from doracle.models.mixture import Mixture

PGD20 = AttackSpec(name="pgd", steps=20, rel_step_size=0.1, restarts=1, random_start=True)


def robust(model, ds, p) -> torch.Tensor:
    """Per payoff example: 1 where the model classifies the PGD-20 example correctly."""
    x, y = ds.x["payoff"], ds.y["payoff"]
    adv = run_attack(PGD20, Mixture([model]), x, y, eps=p.threat_model.eps_value, norm=p.threat_model.norm, seed=7,
                     keys=torch.arange(len(y)))
    with torch.no_grad():
        return (model(adv).argmax(1) == y).float()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--base-epochs", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--max-train", type=int, default=None, help="cap the training split (tests)")
    ap.add_argument("--json", help="also write every number to this file")
    args = ap.parse_args()
    raw = config.read_raw(ROOT / "params.yaml", "params")
    rows = []
    for seed in args.seeds:
        p = config.validate(config.merge(raw, {"seed": seed, "data": {"max_train": args.max_train}}))
        d = Path(f"/tmp/bench_continue_{seed}.safetensors")
        data.prepare(p, str(d))
        device = runtime.setup(seed, "cpu", 1)
        ds = load_dataset(str(d), device)

        def fit(epochs, init=None, tag="", p=p, ds=ds, seed=seed):
            s = runtime.derive_seed(seed, tag)
            runtime.setup(s, "cpu", 1)
            return classifiers.fit(p, ds, arch=p.model.arch, options=None, defense="pgd_at", epochs=epochs, seed=s,
                                   device="cpu", desc=tag, init=init)[0]

        base = fit(args.base_epochs, tag="base")
        continued = fit(args.epochs, init=base, tag="continued")  # the defender best response, w = 0
        scratch = fit(args.base_epochs + args.epochs, tag="scratch")
        a, b = robust(continued, ds, p), robust(scratch, ds, p)
        diff = paired_mean_difference(a.tolist(), b.tolist(), seed=seed)
        rows.append({"seed": seed, "continued": float(a.mean()), "scratch": float(b.mean()), "difference": diff})
        d.unlink(missing_ok=True)
        d.with_suffix(".json").unlink(missing_ok=True)

    total = args.base_epochs + args.epochs
    print(f"digits, PGD-20 robust accuracy on the payoff split; PGD-AT {args.base_epochs} epochs + the defender best "
          f"response (w = 0, warm start) {args.epochs} epochs vs PGD-AT {total} epochs from scratch\n")
    print("| seed | continued % | PGD-AT from scratch % | difference (points) | 95 % interval | verdict |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        c = r["difference"]
        print(f"| {r['seed']} | {100 * r['continued']:.1f} | {100 * r['scratch']:.1f} | {100 * c['difference']:+.1f} | "
              f"[{100 * c['interval'][0]:+.1f}, {100 * c['interval'][1]:+.1f}] | {c['verdict']} |")
    diffs = [r["difference"]["difference"] for r in rows]
    sd = st.stdev(diffs) if len(diffs) > 1 else 0.0
    print(f"\nover seeds: {100 * st.mean(diffs):+.1f} ± {100 * sd:.1f} points")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "mean_difference": st.mean(diffs)}, indent=1))


if __name__ == "__main__":
    main()
