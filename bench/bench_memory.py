"""Peak memory of a defender best response: attackers' training perturbations cached or computed
on the fly (``do.attacker.materialize``).

    PYTHONPATH=src python bench/bench_memory.py [--images 4000] [--iterations 4] [--steps 1]
        [--batch-size 64] [--defense erm] [--eps 8/255] [--malloc fixed]
        [--workdir DIR] [--json out.json]

Claim checked: the peak memory of a defender best response grows with the attackers in its support
when their training perturbations are cached (each holds a float32 copy of the training split),
and only with the distinct defender models they are bound to when they are computed on the fly.

Setup (CPU, ``threads: 1``, ``device: cpu``): ``--images`` CIFAR-10-shaped synthetic images
(3x32x32) written in the official binary format (:func:`doracle.data.formats.write_synthetic`)
and read by the real CIFAR-10 reader (``data: {dataset: cifar10, download: false}``), split
60/20/20 into train/payoff/test (4000 images: 2400 training images, 28.1 MiB of float32
perturbations per cached attacker). Model ``doracle_cnn_small``, 1 epoch per best response, base
model ERM (1 epoch, shared by both modes), defender best response ``--defense`` (ERM by default:
the defense's own attack would be the same in both modes, only the opponent term differs) + the
attacker mixture at weight 0.5, attacker best response PGD with ``--steps`` steps (random start),
``do.meta_solver: uniform`` (every attacker stays in the support: iteration t trains against the
t attackers a000..a(t-1); a(j) is bound to d000..d(j-1), so the on-the-fly job at t holds
max(1, t-1) bound models), ``do.capacity`` = ``--iterations`` + 1 (nothing pruned).

For each mode the DO population is built with the real jobs: ``do init``, attacker best response,
payoff, solve and prune run in this process; each iteration's defender best response runs as its
own process through the real command line,

    python -m doracle do best-response --player defender --params P --data D
        --state it{t-1}/population.json --iteration t --out it{t}/defender.safetensors --log L

and its output is the population's defender of iteration t. Measured per job, by a lean launcher
process (a child forked from this process, which imports torch and trains, would start its
``ru_maxrss`` at this process's RSS):

* peak RSS: the job's own ``ru_maxrss`` (``os.wait4``'s rusage of that one child);
* peak RSS while training: the job's ``VmHWM`` (/proc, Linux) polled every 20 ms, the last value
  read before its log showed the completed epoch bar, i.e. loading and training, without the
  job's final pass over the training split (``train_accuracy``: no autograd, but batches of
  1024, 16x the training batch; one 64-channel 32x32 activation of such a batch is 256 MiB, and
  the pass adds about 570 MiB to the peak in both modes);
* the float32 bytes of cached training perturbations the job loads (the ``x_train`` tensors of the
  attackers in its support, from the safetensors headers), the distinct defender models the
  on-the-fly attackers are bound to (their sidecars' ``target.refs``), and wall seconds.

The measured jobs run with glibc's mmap threshold fixed at 128 KiB (``MALLOC_MMAP_THRESHOLD_``,
``--malloc fixed``, the default): every tensor of 128 KiB or more is mapped when allocated and
unmapped when freed, so RSS follows the live tensors and the same job gives the same peak to
0.1 MiB. With glibc's default (``--malloc default``) the threshold rises with the largest block
freed, freed blocks stay in the heap, and over four runs of the same job its peak varied by 90 MiB
and its peak while training by 56 MiB (two to three cached attackers at the default size); the
jobs take about 40% less time.

A reference process that only imports torch and loads the prepared data set is measured the same
way. Prints a markdown table and the growth from t = 1 to K of both peaks in both modes;
``--json`` writes every number. About 9 minutes at the defaults on a 2-core CPU (docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import ROOT, merge

MODES = ("cache", "on_the_fly")
MIB = 2**20
# ru_maxrss is in kilobytes on Linux, in bytes on macOS
RSS_UNIT = 1 if sys.platform == "darwin" else 1024


def mib(b: int | None) -> str:
    return "n/a" if b is None else f"{b / MIB:.1f}"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def child_env(malloc: str) -> dict:
    """The environment of the measured processes: they import the doracle this process imports,
    each job in its own interpreter (DORACLE_FORKSERVER=0: a forked job's memory is not the
    command's); with ``malloc == "fixed"``, glibc's mmap threshold is fixed at its 128 KiB default."""
    import doracle

    src = str(Path(doracle.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH")
    env = {**os.environ, "PYTHONPATH": src + (os.pathsep + path if path else ""), "DORACLE_FORKSERVER": "0"}
    env.pop("MALLOC_MMAP_THRESHOLD_", None)
    if malloc == "fixed":
        env["MALLOC_MMAP_THRESHOLD_"] = str(128 * 1024)
    return env


# Linux starts a child's ru_maxrss at the RSS of the process that forked it (exec records the old
# address space's high-water mark), so a job forked from this process (torch imported, models trained)
# would report at least this process's size. A lean launcher (Python, no torch: ~10 MB) runs each job
# and reports the job's own ru_maxrss, from os.wait4 on that one child. While the job runs it also
# polls the job's VmHWM (/proc, Linux) and its log every 20 ms: the last VmHWM read before the log
# showed the completed epoch bar is the peak while training (setup and training, before the job's
# final pass over the training split).
LAUNCHER = """
import json, os, re, subprocess, sys, time
out, log, marker = sys.argv[1], sys.argv[2], re.compile(sys.argv[3]) if sys.argv[3] else None
proc = subprocess.Popen(sys.argv[4:])
before, seen = None, marker is None
while True:
    pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
    if pid:
        break
    if not seen:
        try:  # VmHWM first, then the log: a VmHWM read before the marker is logged precedes it
            with open(f"/proc/{proc.pid}/status") as fh:
                hwm = next((int(line.split()[1]) for line in fh if line.startswith("VmHWM:")), None)
            with open(log, errors="replace") as fh:
                seen = bool(marker.search(fh.read()))
            if not seen and hwm is not None:
                before = hwm
        except OSError:
            pass
    time.sleep(0.02)
with open(out, "w") as fh:
    json.dump({"maxrss": usage.ru_maxrss, "hwm_before_marker_kb": before}, fh)
sys.exit(os.waitstatus_to_exitcode(status))
"""
# the training loop's closing log line: training is over, the final train-accuracy pass not yet started
EPOCHS_DONE = r": trained \d+ epochs"


def measure(cmd: list[str], console: Path, env: dict, log: Path | None = None, marker: str = "") -> dict:
    """Run ``cmd`` through the launcher: its peak RSS (bytes), its peak before ``marker`` appeared in
    ``log`` (bytes, None without /proc or a marker), and wall seconds. Exits if it fails."""
    res = console.with_suffix(".rss.json")
    if log is not None:
        log.unlink(missing_ok=True)  # the launcher must not find an older run's marker
    t0 = time.perf_counter()
    with open(console, "w") as fh:
        proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(res), str(log or ""), marker, *cmd],
                              stdout=fh, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{console.read_text()[-3000:]}")
    r = json.loads(res.read_text())
    # valid once the finished log holds the marker: every VmHWM kept was read before it was logged
    logged = bool(marker) and re.search(marker, log.read_text(errors="replace")) is not None
    before = r["hwm_before_marker_kb"] if logged else None
    return {"peak_rss_bytes": r["maxrss"] * RSS_UNIT,
            "training_peak_rss_bytes": None if before is None else before * 1024, "wall_seconds": wall}


def tensor_bytes(path: str | Path, name: str) -> int:
    """Bytes of tensor ``name`` in a safetensors file, from its header (0 if absent)."""
    with open(path, "rb") as fh:
        header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
    if name not in header:
        return 0
    start, end = header[name]["data_offsets"]
    return end - start


def make_params(args, data_root: Path, mode: str) -> dict:
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    k = args.iterations
    return merge(base, {
        "experiment": "bench-memory",  # one experiment: both modes read one data set and base model
        "seed": args.seed, "device": "cpu", "threads": 1,
        "data": {"dataset": "cifar10", "root": str(data_root), "download": False, "max_train": None},
        "model": {"arch": "doracle_cnn_small"},
        "threat_model": {"norm": "linf", "eps": args.eps},
        "training": {"epochs": 1, "batch_size": args.batch_size, "augmentation": "none",
                     "precision": "fp32", "compile": False},
        "base": {"defense": "erm", "epochs": 1},
        "do": {"iterations": k, "meta_solver": "uniform", "pruners": ["capacity"], "capacity": k + 1,
               "defender": {"defense": args.defense, "epochs": 1, "opponent_weight": 0.5, "warm_start": False},
               "attacker": {"attack": {"name": "pgd", "steps": args.steps, "rel_step_size": 0.5, "restarts": 1,
                                       "random_start": True},
                            "materialize": mode}},
    })


def run_mode(args, mode: str, params_file: Path, data: str, base: str, work: Path, env: dict) -> list[dict]:
    """Build ``mode``'s population, measuring every defender best response as its own process."""
    from doracle import config
    from doracle.artifacts import read_json, sidecar
    from doracle.games import population
    from doracle.games.at import jobs as adversarial

    p = config.load(params_file)
    d = work / mode
    d.mkdir(parents=True, exist_ok=True)
    state = str(d / "it000" / "population.json")
    (d / "it000").mkdir(exist_ok=True)
    adversarial.init(p, data, base, str(d / "it000" / "attacker.safetensors"), state)
    rows = []
    for t in range(1, args.iterations + 1):
        it = d / f"it{t:03d}"
        it.mkdir(exist_ok=True)
        defender = str(it / "defender.safetensors")
        st, doc = population.read_population(state)
        if st.converged:
            sys.exit(f"{mode}: the DO state converged before iteration {t}: its best responses would be skipped "
                     "(try another --seed or a smaller --eps)")
        cmd = [sys.executable, "-m", "doracle", "do", "best-response", "--player", "defender",
               "--params", str(params_file), "--data", data, "--state", state, "--iteration", str(t),
               "--out", defender, "--log", str(it / "defender.log")]
        m = measure(cmd, it / "defender.console", env, it / "defender.log", EPOCHS_DONE)
        meta = read_json(sidecar(defender))
        if meta.get("skipped"):
            sys.exit(f"{mode}: the defender best response of iteration {t} was skipped: {meta.get('reason')}")
        support = meta["opponent"]["ids"]
        paths = {sid: doc["strategies"][sid]["path"] for sid in support}
        fly = [sid for sid in support if meta["opponent"]["materialized"][sid] == "on_the_fly"]
        bound = {ref["sha256"] for sid in fly for ref in read_json(sidecar(paths[sid]))["target"]["refs"].values()}
        rows.append({"iteration": t, "attackers": len(support), "support": support,
                     "materialized": sorted(set(meta["opponent"]["materialized"].values())),
                     "peak_rss_bytes": m["peak_rss_bytes"], "training_peak_rss_bytes": m["training_peak_rss_bytes"],
                     "wall_seconds": m["wall_seconds"],
                     "cached_train_bytes": sum(tensor_bytes(paths[sid], "x_train") for sid in support),
                     "bound_models": len(bound)})
        log(f"{mode} it{t}: {len(support)} attackers, peak RSS {mib(m['peak_rss_bytes'])} MiB (while training "
            f"{mib(m['training_peak_rss_bytes'])} MiB), {m['wall_seconds']:.1f} s")
        if t == args.iterations:
            break
        attacker = str(it / "attacker.safetensors")
        pay, sol, nxt = (str(it / f) for f in ("payoff.json", "meta.json", "population.json"))
        adversarial.best_response_attacker(p, data, state, t, attacker)
        adversarial.payoff(p, data, state, t, defender, attacker, pay)
        population.solve_meta(p, state, pay, sol)
        population.prune(p, state, pay, sol, nxt)
        state = nxt
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, default=4000, help="pooled synthetic images (60%% become training)")
    ap.add_argument("--iterations", type=int, default=4, help="K: defender best responses per mode (1..K attackers)")
    ap.add_argument("--steps", type=int, default=1, help="PGD steps of the attacker best response")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--defense", default="erm", help="do.defender.defense")
    ap.add_argument("--eps", default="8/255", help="threat_model.eps (L-infinity)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--malloc", choices=("fixed", "default"), default="fixed",
                    help="measured jobs' glibc mmap threshold: fixed at 128 KiB (RSS tracks live memory, "
                         "repeatable) or glibc's default dynamic threshold (faster, RSS noisy by tens of MiB)")
    ap.add_argument("--workdir", help="keep the projects here (default: a temporary directory)")
    ap.add_argument("--json", help="also write every number to this file")
    args = ap.parse_args()
    if args.iterations < 2 or args.images < 30:
        ap.error("needs --iterations >= 2 and --images >= 30")

    from doracle import config, data
    from doracle.data import formats
    from doracle.games.at import jobs as adversarial

    t_start = time.perf_counter()
    env = child_env(args.malloc)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp).resolve()
        work.mkdir(parents=True, exist_ok=True)
        n_test = args.images // 6
        formats.write_synthetic("cifar10", work / "cifar", args.images - n_test, n_test, seed=args.seed)
        params_files = {}
        for mode in MODES:
            params_files[mode] = work / f"params-{mode}.yaml"
            params_files[mode].write_text(yaml.safe_dump(make_params(args, work / "cifar", mode), sort_keys=False))
        p = config.load(params_files["cache"])
        data_path, base = str(work / "data.safetensors"), str(work / "base.safetensors")
        dmeta = data.prepare(p, data_path)
        log(f"data: {dmeta['splits']}")
        # the base model reads no do.* params: one for both modes
        adversarial.train_classifier(p, data_path, base, role="base", method="erm")
        ref = measure([sys.executable, "-c", "import sys, torch; from doracle.data import load; load(sys.argv[1])",
                       data_path], work / "reference.console", env)
        log(f"reference (import torch, load the data): {mib(ref['peak_rss_bytes'])} MiB")
        modes = {mode: run_mode(args, mode, params_files[mode], data_path, base, work, env) for mode in MODES}

    n_train = dmeta["splits"]["train"]
    per_attacker = n_train * 3 * 32 * 32 * 4
    cache, fly = modes["cache"], modes["on_the_fly"]
    k = args.iterations

    def growth(rows: list[dict], key: str) -> int | None:
        first, last = rows[0][key], rows[-1][key]
        return None if first is None or last is None else last - first

    growths = {key: {m: growth(rows, key) for m, rows in modes.items()}
               for key in ("peak_rss_bytes", "training_peak_rss_bytes", "cached_train_bytes")}

    def ratio(key: str) -> float | None:
        g = growths[key]
        return g["cache"] / g["on_the_fly"] if g["cache"] is not None and (g["on_the_fly"] or 0) > 0 else None

    ratios = {key: ratio(key) for key in ("peak_rss_bytes", "training_peak_rss_bytes")}
    total = time.perf_counter() - t_start

    print(f"CIFAR-10-shaped synthetic data: {args.images} images, {n_train} training (3x32x32), "
          f"{mib(per_attacker)} MiB of float32 perturbations per cached attacker; doracle_cnn_small, 1 epoch, "
          f"batch {args.batch_size}, defender {args.defense} + attacker mixture (weight 0.5), attacker "
          f"PGD-{args.steps}, eps {args.eps}, meta-solver uniform; CPU, 1 thread; malloc {args.malloc}. Peak RSS: "
          "ru_maxrss of the job's process; while training: its VmHWM before the final train-accuracy pass")
    print()
    print("| t | attackers in support | cache: peak RSS MiB | cache: while training MiB | cache: cached x_train MiB "
          "loaded | cache: wall s | on the fly: peak RSS MiB | on the fly: while training MiB | on the fly: bound "
          "defender models | on the fly: wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print(f"| ref | import torch + load data | {mib(ref['peak_rss_bytes'])} | | | {ref['wall_seconds']:.1f} | "
          f"{mib(ref['peak_rss_bytes'])} | | | |")
    for c, f in zip(cache, fly, strict=True):
        print(f"| {c['iteration']} | {c['attackers']} | {mib(c['peak_rss_bytes'])} "
              f"| {mib(c['training_peak_rss_bytes'])} | {mib(c['cached_train_bytes'])} | {c['wall_seconds']:.1f} "
              f"| {mib(f['peak_rss_bytes'])} | {mib(f['training_peak_rss_bytes'])} | {f['bound_models']} "
              f"| {f['wall_seconds']:.1f} |")
    print()
    for key, what in (("peak_rss_bytes", "peak RSS"), ("training_peak_rss_bytes", "peak RSS while training")):
        g, r = growths[key], ratios[key]
        print(f"growth of {what} from t = 1 to {k}: cache {mib(g['cache'])} MiB, on the fly "
              f"{mib(g['on_the_fly'])} MiB, ratio cache / on the fly "
              + ("n/a (on the fly did not grow)" if r is None else f"{r:.1f}"))
    print(f"cached x_train loaded grew by {mib(growths['cached_train_bytes']['cache'])} MiB; total wall {total:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "config": {**{key: v for key, v in vars(args).items() if key not in ("json", "workdir")},
                       "n_train": n_train, "splits": dmeta["splits"], "per_attacker_train_bytes": per_attacker},
            "reference": ref, "modes": modes, "growth_bytes": growths, "growth_ratio": ratios,
            "total_wall_seconds": total}, indent=1))


if __name__ == "__main__":
    main()
