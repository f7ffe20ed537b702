"""Choosing the DO-GAN oracle's defaults on validation data: FID on the payoff split, never the test split.

    python bench/bench_gan_oracle.py [--seeds 0 1 2] [--configs '{"w0": {"gan": {"opponent_weight": 0}}}']
                                          [--base-gan] [--json out.json]

Each config (a JSON object merged into params-gan.yaml) runs the whole double oracle in process
(init, the iterations' best responses, payoff, solve and prune, the closing step), as the pipeline's
jobs do, in a throw-away folder; the data and reference classifier are made once per seed. It
scores the deployed generator mixture (sigma_G of the closed population) and each final generator
by FID in the reference classifier's features against the **payoff split's** real images (as many
generated), and prints the closing step's exploitability and the DO gaps. With ``--base-gan`` a
config also trains the base GAN at the same budget in player-epochs: the ratio DO / base GAN per
seed. The defaults in params-gan.yaml (``gan.lr_discriminator``, ``gan.n_critic``,
``gan.opponent_weight``) were chosen with it; docs/performance.md records the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics as st
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, merge  # noqa: E402

#: the configs compared by default (the shipped defaults are w0.1)
CONFIGS = {
    "w0": {"gan": {"opponent_weight": 0.0}},
    "w0.1": {"gan": {"opponent_weight": 0.1}},
    "w0.25": {"gan": {"opponent_weight": 0.25}},
}


def run(base: dict, over: dict, seed: int, tmp: Path, name: str, base_gan: bool) -> dict:
    import torch

    from doracle import config, pipeline
    from doracle.data import load as load_dataset
    from doracle.data import prepare
    from doracle.evaluation.generative import GenerativeMetrics
    from doracle.games import classifiers
    from doracle.games.gan import jobs as gan
    from doracle.games.gan.arithmetic import sample_mixture
    from doracle.games.population import prune, read_population, solve_meta, support

    torch.set_num_threads(1)
    p = config.validate({**merge(base, over), "seed": seed})
    shared, d = tmp / f"shared-s{seed}", tmp / f"{name}-s{seed}"
    P = {k: v.replace("{exp}", p.experiment) for k, v in pipeline.PATTERNS.items()}
    data, ref = P["data"], P["model"].format(role="reference")
    cwd = os.getcwd()
    d.mkdir(parents=True)
    os.chdir(d)
    try:
        if shared.exists():  # the data and reference classifier depend only on the seed here
            shutil.copytree(shared / "results", d / "results")
        else:
            prepare(p, data)
            gan.train_reference(p, data, ref)
            shutil.copytree(d / "results", shared / "results")
        t0 = time.perf_counter()
        state = P["population"].format(it="000")
        gan.init(p, data, P["init"], state)
        for t in range(1, p.do.iterations + 1):
            it = pipeline.it3(t)
            paths = {}
            for responder, players in gan.game_of(p).responders(p).items():
                path = P["strategy"].format(it=it, player=responder)
                gan.best_response(p, responder, data, state, t, path)
                paths.update(dict.fromkeys(players, path))
            pay, meta, nxt = (P[k].format(it=it) for k in ("payoff", "meta", "population"))
            gan.payoff(p, data, state, t, paths["discriminator"], paths["generator"], pay)
            solve_meta(p, state, pay, meta)
            prune(p, state, pay, meta, nxt)
            state = nxt
        gan.close(p, data, state, P["closing_model"], P["closed"])
        if base_gan:
            gan.train_base_gan(p, data, P["baseline"].format(method="base_gan"))
        seconds = time.perf_counter() - t0
        ds = load_dataset(data, "cpu")
        classifier, _ = classifiers.load(ref, "cpu")
        real = ds.x["payoff"]  # validation images: the test split is never looked at
        score = GenerativeMetrics(classifier, real, k=5, split_size=min(100, len(real)), seed=1,
                                  min_share=0.5 / int(ds.meta["num_classes"]), inception=False, bootstrap=0)
        closed, doc = read_population(P["closed"])
        ids, probs = support(closed, "col")

        def fid(gens, q):
            r = score(sample_mixture(gens, q, len(real), 123)[0])
            return {"fid": r["fid"], "classes_covered": r["classes_covered"], "recall": r["recall"]}

        out = {"seconds": seconds, "sigma_G": dict(zip(ids, probs, strict=True)),
               "exploitability": closed.closing["exploitability"],
               "exploitability_stderr": closed.closing["exploitability_stderr"],
               "gaps": [h["gap"] for h in closed.history],
               "do_mixture": fid([gan._load_strategy(doc, i, "cpu") for i in ids], probs),
               "members": {i: fid([gan._load_strategy(doc, i, "cpu")], [1.0])["fid"] for i in closed.col_ids}}
        if base_gan:
            out["base_gan"] = fid([gan.load_net(P["baseline"].format(method="base_gan"), "generator", "cpu")], [1.0])
        return out
    finally:
        os.chdir(cwd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--configs", default=json.dumps(CONFIGS), help="JSON: name -> params merged into the file")
    ap.add_argument("--params", default=str(ROOT / "params-gan.yaml"))
    ap.add_argument("--set", default="{}", help="JSON merged into the params of every config (e.g. a tiny budget)")
    ap.add_argument("--base-gan", action="store_true", help="also train the base GAN at the same budget")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()
    base = merge(yaml.safe_load(Path(args.params).read_text()), json.loads(args.set))
    configs = json.loads(args.configs)
    results: dict = {name: {} for name in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for name, over in configs.items():
                r = results[name][seed] = run(base, over, seed, Path(tmp), name, args.base_gan)
                extra = f", base GAN {r['base_gan']['fid']:.1f}" if "base_gan" in r else ""
                print(f"{name} seed {seed}: DO mixture FID {r['do_mixture']['fid']:.1f}{extra}, exploitability "
                      f"{r['exploitability']:.3f} ± {r['exploitability_stderr']:.3f}, {r['seconds']:.0f} s",
                      file=sys.stderr, flush=True)
    print("payoff-split FID of the deployed DO mixture (validation; mean ± sd over seeds "
          f"{args.seeds}), exploitability from the closing step")
    print("| config | DO mixture FID | per seed | exploitability |" + (" base GAN FID | DO / base |"
                                                                         if args.base_gan else ""))
    print("|---|---|---|---|" + ("---|---|" if args.base_gan else ""))
    for name, by_seed in results.items():
        fids = [by_seed[s]["do_mixture"]["fid"] for s in args.seeds]
        expl = [by_seed[s]["exploitability"] for s in args.seeds]
        sd = st.stdev(fids) if len(fids) > 1 else 0.0
        row = (f"| {name} | {st.mean(fids):.1f} ± {sd:.1f} | {' / '.join(f'{f:.1f}' for f in fids)} | "
               f"{st.mean(expl):.3f} |")
        if args.base_gan:
            base_fids = [by_seed[s]["base_gan"]["fid"] for s in args.seeds]
            row += (f" {st.mean(base_fids):.1f} | "
                    f"{' / '.join(f'{a / b:.2f}' for a, b in zip(fids, base_fids, strict=True))} |")
        print(row)
    if args.json:
        Path(args.json).write_text(json.dumps({"seeds": args.seeds, "configs": configs, "results": results}, indent=1))


if __name__ == "__main__":
    main()
