"""The main job (``snakemake -c2``, both default experiments) of several revisions, back to back.

Each revision is cloned from this repository into a folder of its own and run there, one after
the other (run nothing else meanwhile): a ``doracle`` wrapper on ``PATH`` runs ``python -m doracle`` with the
clone's ``src/`` first on ``PYTHONPATH`` (the packages are this interpreter's, the same for every
revision). It prints each run's wall seconds, its job-seconds (the sum of the ``s`` column of the
Snakemake benchmark files under ``benchmarks/``) and job count, and both as ratios to the first
revision's. Machines of one kind differ by 2x: compare ratios from one call, not seconds across
calls. The clones are kept (``--keep DIR``: ``DIR/<i>-<revision>``) for ``bench/compare_runs.py``.

    python bench/bench_main_job.py 77bb543 HEAD [--keep DIR] [--target T ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def job_seconds(project: Path) -> tuple[float, int]:
    """The sum of the benchmark files' ``s`` (each job's wall seconds as Snakemake measured them) and
    their number."""
    total, n = 0.0, 0
    for f in sorted((project / "benchmarks").rglob("*.tsv")):
        with open(f) as fh:
            rows = list(csv.DictReader(fh, delimiter="\t"))
        if rows:
            total += float(rows[-1]["s"])
            n += 1
    return total, n


def run(rev: str, where: Path, targets: list[str], cores: int) -> dict:
    """Clone ``rev`` into ``where`` and time its main job there."""
    sha = subprocess.run(["git", "rev-parse", "--verify", f"{rev}^{{commit}}"], cwd=ROOT, capture_output=True,
                         text=True)
    if sha.returncode != 0:
        sys.exit(f"{rev}: not a commit of {ROOT}")
    if where.exists():
        shutil.rmtree(where)
    subprocess.run(["git", "clone", "-q", str(ROOT), str(where)], check=True)
    subprocess.run(["git", "checkout", "-q", sha.stdout.strip()], cwd=where, check=True)
    wrapper = where / ".bench-bin"
    wrapper.mkdir()
    (wrapper / "doracle").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m doracle "$@"\n')
    (wrapper / "doracle").chmod(0o755)
    env = {**os.environ, "PATH": f"{wrapper}{os.pathsep}{os.environ.get('PATH', '')}",
           "PYTHONPATH": str(where / "src")}
    snakemake = shutil.which("snakemake", path=str(Path(sys.executable).parent)) or "snakemake"
    t0 = time.perf_counter()
    proc = subprocess.run([snakemake, f"-c{cores}", *targets, "-q"], cwd=where, env=env, capture_output=True,
                          text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{rev}: snakemake failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    js, n = job_seconds(where)
    return {"revision": rev, "commit": sha.stdout.strip()[:12], "wall_seconds": round(wall, 1),
            "job_seconds": round(js, 1), "jobs": n}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("revisions", nargs="+", help="commits of this repository; the first is the reference")
    ap.add_argument("--keep", type=Path, help="clone into DIR/<i>-<revision> and keep the clones "
                                              "(default: a temp folder, removed)")
    ap.add_argument("--target", action="append", default=[], help="a Snakemake target instead of the default "
                                                                  "(repeatable)")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write the rows here too")
    args = ap.parse_args(argv)
    base = args.keep or Path(tempfile.mkdtemp(prefix="bench-main-job-"))
    rows = []
    try:
        for i, rev in enumerate(args.revisions):
            where = base / f"{i}-{rev.replace('/', '_')}"
            rows.append(run(rev, where, args.target, args.cores))
            if args.keep:
                rows[-1]["folder"] = str(where)
            print(f"{rev}: {rows[-1]['wall_seconds']} s, {rows[-1]['job_seconds']} job-seconds, "
                  f"{rows[-1]['jobs']} jobs", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    ref = rows[0]
    print(f"\n| revision | commit | jobs | wall | job-seconds | wall / {ref['revision']} | "
          f"job-seconds / {ref['revision']} |\n|---|---|---|---|---|---|---|")
    for r in rows:
        r["wall_ratio"] = round(r["wall_seconds"] / ref["wall_seconds"], 3)
        r["job_seconds_ratio"] = round(r["job_seconds"] / ref["job_seconds"], 3) if ref["job_seconds"] else None
        print(f"| {r['revision']} | {r['commit']} | {r['jobs']} | {r['wall_seconds']} s | {r['job_seconds']} | "
              f"{r['wall_ratio']} | {r['job_seconds_ratio']} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
