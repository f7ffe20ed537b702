"""``doracle sweep``: an Optuna study whose trials run the real pipeline (docs/sweeps.md)."""

from __future__ import annotations

import argparse
import sys

from doracle.errors import ConfigError
from doracle.runtime import progress


def cmd_sweep(args) -> int:
    # optuna: the sweep command's own
    from doracle.sweep import load_space
    from doracle.sweep.report import write_report
    from doracle.sweep.runner import Worker, open_study

    spec = load_space(args.space, names=not args.report_only)  # every check before any trial
    if args.study and args.study != spec.space.study:
        raise ConfigError(f"{args.space}: study {spec.space.study!r} differs from its file name ({args.study!r}); "
                          "the Snakemake target results/sweeps/<study>/report needs sweeps/<study>.yaml")
    if args.report_only:
        study = open_study(spec, create=False)
        print(f"doracle: sweep {spec.space.study}: report at {write_report(study, spec)}/summary.md")
        return 0
    # tqdm: loaded only when a progress bar is shown
    from tqdm import tqdm


    bar = progress(total=args.trials or spec.space.trials, unit="trial")
    worker = Worker(spec, cores=args.cores, profile=args.profile, worker=args.worker, trials=args.trials,
                    say=lambda line: tqdm.write(line, file=sys.stdout), on_trial=lambda: bar.update(1),
                    pipeline=getattr(args, "pipeline", None))
    print(f"doracle: sweep {spec.space.study}: {worker.cap} trials, metric {spec.metric} ({spec.direction}), "
          f"storage {spec.journal or spec.space.storage}", flush=True)
    try:
        ran = worker.run()
    except KeyboardInterrupt:  # the trial went back to the queue (Worker.run); the report says so
        bar.close()
        print(f"doracle: sweep {spec.space.study}: interrupted; report at {write_report(worker.study, spec)}/"
              "summary.md; rerun to resume", flush=True)
        return 130
    bar.close()
    out = write_report(worker.study, spec)
    print(f"doracle: sweep {spec.space.study}: this worker ran "
          f"{', '.join(f'{n} {s}' for s, n in ran.items()) or 'no trial'}; report at {out}/summary.md", flush=True)
    if worker.stopping:
        return 128 + worker.stopping
    if worker.invalid is not None:  # the trial is not counted: fix the input and rerun
        raise ConfigError(f"{args.space}: {worker.invalid}; the trial is not counted against the study's "
                          "trials: fix it and rerun")
    if ran.get("FAIL"):
        print(f"doracle: sweep {spec.space.study}: {ran['FAIL']} trial(s) failed (logs: {spec.dir}/logs/)",
              file=sys.stderr, flush=True)
        return 1
    return 0


def _positive(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def _non_negative(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 0")
    return int(text)


def _cores(text: str) -> str:
    """Snakemake's --cores: ``all`` or a positive number (checked here: a bad value would fail every trial)."""
    return "all" if text == "all" else str(_positive(text))


def register(sub) -> None:
    p = sub.add_parser(
        "sweep", help="an Optuna study whose trials run the pipeline (docs/sweeps.md)",
        description="Run trials of the study a space file describes until it has its trials (all workers "
                    "together): each trial runs the pipeline with Snakemake on its own experiment. Run it in "
                    "several processes or SLURM jobs to share the study; rerun it to resume.")
    p.add_argument("space", help="the space file (e.g. sweeps/example.yaml)")
    p.add_argument("--trials", type=_positive, help="override the space file's trials (the study's size)")
    p.add_argument("--cores", default="all", type=_cores,
                   help="Snakemake --cores for each trial's run: a positive number or all (default: all)")
    p.add_argument("--profile", help="a Snakemake profile for the trials' runs (e.g. profiles/slurm)")
    p.add_argument("--worker", type=_non_negative, default=0,
                   help="this worker's index when several share the study (offsets the sampler's seed)")
    p.add_argument("--study", help="fail unless the space file's study is this (the Snakemake rule's check)")
    p.add_argument("--report-only", action="store_true", help="only (re)write the report of the study as it is")
    p.set_defaults(handler=cmd_sweep)
