"""Each seed method's headline claim, checked on the embedded digits data.

    python bench/bench_methods.py [--seeds 0 1 2] [--epochs 6]

Trains every registered defense with the same budget (params.yaml's training settings and
``--epochs``) for each seed, evaluates clean, FGSM and PGD-20 (2 restarts) accuracy on the test
split at params.yaml's eps, and prints the mean over seeds, the training time relative to ERM
(measured in the same run) and each paper's claim with the outcome. docs/methods.md records a run.
"""

from __future__ import annotations

import argparse
import statistics as st
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))

    from doracle import config, data, runtime
    from doracle.attacks import run_attack
    from doracle.config import AttackSpec
    from doracle.defenses import DEFENSES, make_defense
    from doracle.defenses.training import train
    from doracle.games.classifiers import new_classifier
    from doracle.models.mixture import Mixture

    base = config.load(args.params)
    eps = base.threat_model.eps_value
    fgsm = AttackSpec(name="fgsm", steps=1, rel_step_size=1.0, random_start=False)
    pgd = AttackSpec(name="pgd", steps=20, rel_step_size=0.1, restarts=2)
    res: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            params = config.validate({**base.model_dump(), "seed": seed})
            path = Path(tmp) / f"data{seed}.safetensors"
            data.prepare(params, path)
            ds = data.load(path)
            x, y = ds.x["test"], ds.y["test"]
            for name in DEFENSES.names():
                runtime.setup(seed)
                model = new_classifier(params.model.arch, ds, "cpu")
                stats = train(model, make_defense(name, params), ds.x["train"], ds.y["train"], params.training,
                              epochs=args.epochs, seed=seed, desc=name)
                mix = Mixture([model])
                r = res.setdefault(name, {"clean": [], "fgsm": [], "pgd": [], "time": [], "passes": []})
                r["clean"].append(float(mix.expected_accuracy(x, y).mean()))
                r["fgsm"].append(float(mix.expected_accuracy(run_attack(fgsm, mix, x, y, eps=eps, seed=seed), y).mean()))
                r["pgd"].append(float(mix.expected_accuracy(run_attack(pgd, mix, x, y, eps=eps, seed=seed), y).mean()))
                r["time"].append(stats["train_seconds"])
                r["passes"].append(stats["compute"]["forward_passes"] + stats["compute"]["backward_passes"])
                print(f"seed {seed} {name:>10}: clean {r['clean'][-1]:.3f} fgsm {r['fgsm'][-1]:.3f} "
                      f"pgd {r['pgd'][-1]:.3f} {r['time'][-1]:.1f} s", file=sys.stderr, flush=True)


    def m(name, key):
        return st.mean(res[name][key])

    def sd(name, key):
        return st.stdev(res[name][key]) if len(res[name][key]) > 1 else 0.0

    erm_t, erm_p = m("erm", "time"), m("erm", "passes")
    print(f"digits, eps {base.threat_model.eps}, {args.epochs} epochs, seeds {args.seeds} (mean ± sd, %)")
    print("| method | clean | FGSM | PGD-20 | train s | × ERM | passes (M) | × ERM |")
    print("|---|---|---|---|---|---|---|---|")
    for name in res:
        print(f"| {name} | " + " | ".join(f"{100 * m(name, k):.1f} ± {100 * sd(name, k):.1f}"
                                          for k in ("clean", "fgsm", "pgd"))
              + f" | {m(name, 'time'):.1f} | {m(name, 'time') / erm_t:.1f} | {m(name, 'passes') / 1e6:.2f} | "
                f"{m(name, 'passes') / erm_p:.1f} |")
    pgd_at = ("pgd_at", "pgd")
    claims = [
        ("fgsm_rs", "fast AT: robustness near PGD-AT's at a fraction of its cost",
         m("fgsm_rs", "pgd") >= m(*pgd_at) - 0.05 and m("fgsm_rs", "time") < m("pgd_at", "time")),
        ("trades", "TRADES: robust accuracy at least PGD-AT's (trading some clean accuracy)",
         m("trades", "pgd") >= m(*pgd_at) - 0.01),
        ("dale", "DALE: robust and clean accuracy at least PGD-AT's",
         m("dale", "pgd") >= m(*pgd_at) - 0.01 and m("dale", "clean") >= m("pgd_at", "clean") - 0.01),
        ("amp", "AMP: lower clean test error than ERM (better generalisation)",
         m("amp", "clean") > m("erm", "clean")),
        ("l2l", "L2L: robustness comparable to PGD-AT at lower cost",
         m("l2l", "pgd") >= m(*pgd_at) - 0.03 and m("l2l", "time") < m("pgd_at", "time")),
        ("local_ball", "local-ball: near strong-adversary (PGD-AT) robustness with a weak adversary, cheaper",
         m("local_ball", "pgd") >= m(*pgd_at) - 0.03 and m("local_ball", "time") < m("pgd_at", "time")),
    ]
    print()
    for _name, claim, ok in claims:
        print(f"{'HOLDS ' if ok else 'FAILS '} {claim}")


if __name__ == "__main__":
    main()
