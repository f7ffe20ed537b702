"""Pipeline benchmark: double-oracle overhead and no-op rerun times of the default main job.

    python bench/bench_pipeline.py [--params params.yaml] [--cores 2]

Runs the experiment of ``--params`` in a fresh temporary project (git + DVC), in two phases:
data, base model and iteration 0 first (untimed), then the DO chain alone (timed wall clock).
Prints, all measured in this run:

* DO overhead = DO wall time / sum of best-response job times (target <= 1.15): how much the
  payoff, LP solve, prune and scheduling add on top of the oracles. Also against the oracles'
  in-process compute (training / attack seconds recorded in their artifacts), without process
  start-up;
* the no-op rerun times of ``snakemake -n`` and ``dvc status`` (after ``dvc commit``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import ROOT, new_project, sh


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", default=str(ROOT / "params.yaml"))
    ap.add_argument("--cores", type=int, default=2)
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    from doracle import config
    from doracle.artifacts import timing_of
    from doracle.compute import wall_seconds

    params = config.load(args.params)
    exp, T = params.experiment, params.do.iterations
    with tempfile.TemporaryDirectory() as tmp:
        proj = new_project(Path(tmp), Path(args.params), dvc=True)
        c = f"-c{args.cores}"
        it0 = f"results/{exp}/do/it000/population.json"
        final = f"results/{exp}/do/it{T:03d}/population.json"
        sh(["snakemake", c, it0], proj)
        do_wall, _ = sh(["snakemake", c, final], proj)
        t_all, _ = sh(["snakemake", c], proj)
        br_jobs = sum(wall_seconds(p) for it in range(1, T + 1)
                      for p in (proj / f"benchmarks/{exp}/do/it{it:03d}").glob("*.tsv")
                      if p.stem in ("defender", "attacker"))
        compute = 0.0
        for it in range(1, T + 1):
            d = json.loads((proj / f"results/{exp}/do/it{it:03d}/defender.json").read_text())
            a = json.loads((proj / f"results/{exp}/do/it{it:03d}/attacker.json").read_text())
            compute += timing_of(d, "training", "train_seconds") + timing_of(a, "attack_seconds")
        sh(["dvc", "commit", "-f", "-q"], proj)
        noop_snake, out = sh(["snakemake", "-n"], proj)
        noop_dvc, dout = sh(["dvc", "status"], proj)
        assert "Nothing to be done" in out and "up to date" in dout

    print(f"experiment {exp}: {T} DO iterations, -c{args.cores}")
    print(f"DO wall time (iterations 1..{T}):            {do_wall:7.1f} s")
    print(f"sum of best-response job times:             {br_jobs:7.1f} s")
    print(f"DO overhead = wall / best-response jobs:      {do_wall / br_jobs:5.2f}  (target <= 1.15: "
          f"{'PASS' if do_wall / br_jobs <= 1.15 else 'FAIL'})")
    print(f"best responses' in-process compute:         {compute:7.1f} s  (wall / compute {do_wall / compute:.2f})")
    print(f"rest of the main job after the DO chain:    {t_all:7.1f} s")
    print(f"no-op rerun: snakemake -n {noop_snake:.1f} s, dvc status {noop_dvc:.1f} s")


if __name__ == "__main__":
    main()
