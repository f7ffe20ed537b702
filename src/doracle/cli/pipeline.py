"""Pipeline subcommands: one per Snakemake rule / DVC stage. Parsing only; work in the rooms."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

from doracle.errors import ConfigError


@contextlib.contextmanager
def _logged(path: str | None, what: str):
    """With ``--log``: the job's output (progress bars included) goes to the log file; the console
    gets one line when the job ends, and the error if it fails."""
    if not path:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    out, err = sys.stdout, sys.stderr
    t0 = time.perf_counter()
    with open(path, "w", buffering=1) as fh:
        sys.stdout = sys.stderr = fh
        try:
            yield
        except BaseException as exc:
            print(f"FAILED: {type(exc).__name__}: {exc}", file=fh)
            raise
        finally:
            sys.stdout, sys.stderr = out, err
    print(f"doracle: {what} done in {time.perf_counter() - t0:.1f} s (log: {path})", file=out)


def _params(args, *, names: bool = True):
    from doracle import config

    p = config.load(args.params)
    if names:
        config.check_names(p)
    return p


def cmd_data(args):
    from doracle.data import prepare

    p = _params(args, names=False)
    with _logged(args.log, f"data {p.data.dataset}"):
        meta = prepare(p, args.out)
        print(f"prepared {meta['dataset']}: " + ", ".join(f"{k} {v}" for k, v in meta["splits"].items()))


def cmd_train(args):
    from doracle.games.adversarial import train_classifier

    p = _params(args)
    method = args.method or (p.base.defense if args.role == "base" else None)
    if method is None:
        raise ConfigError("--method is required with --role baseline")
    if args.role == "baseline" and method not in p.baselines.methods:
        raise ConfigError(f"--method {method!r} is not in baselines.methods {p.baselines.methods}")
    with _logged(args.log, f"train {args.role} {method}"):
        meta = train_classifier(p, args.data, args.out, role=args.role, method=method)
        print(f"trained {method}: train accuracy {meta['training']['train_accuracy']:.4f}, "
              f"{meta['training']['train_seconds']:.1f} s")


def cmd_do_init(args):
    from doracle.games.adversarial import init

    p = _params(args)
    with _logged(args.log, "do init"):
        doc = init(p, args.data, args.base, args.attacker_out, args.out)
        print(f"iteration 0: payoff {doc['state']['value']:.4f}")


def cmd_do_best_response(args):
    from doracle.games import adversarial

    p = _params(args)
    fn = adversarial.best_response_defender if args.player == "defender" else adversarial.best_response_attacker
    with _logged(args.log, f"it{args.iteration:03d} best response ({args.player})"):
        meta = fn(p, args.data, args.state, args.iteration, args.out)
        print("skipped (converged)" if meta.get("skipped") else f"wrote {args.out}")


def cmd_do_payoff(args):
    from doracle.games.adversarial import payoff

    p = _params(args, names=False)
    with _logged(args.log, f"it{args.iteration:03d} payoff"):
        doc = payoff(p, args.data, args.state, args.iteration, args.defender, args.attacker, args.out)
        print("skipped (converged)" if doc.get("skipped") else f"evaluated {doc['cells_evaluated']} new cells")


def cmd_do_solve(args):
    from doracle.games.population import solve_meta

    p = _params(args, names=False)
    with _logged(args.log, "solve"):
        doc = solve_meta(p, args.state, args.payoff, args.out)
        print(f"value {doc['solution']['value']:.4f}" + ("" if doc["skipped"] else f", gap {doc['gap']:.4g}"))


def cmd_do_prune(args):
    from doracle.games.population import prune

    p = _params(args, names=False)
    with _logged(args.log, "prune"):
        doc = prune(p, args.state, args.payoff, args.meta, args.out)
        st = doc["state"]
        print(f"population {len(st['row_ids'])}x{len(st['col_ids'])}, converged {st['converged']}")


def cmd_evaluate(args):
    from doracle.evaluation.suite import DO_TARGETS, evaluate

    p = _params(args)
    if (args.population is None) == (args.checkpoint is None):
        raise ConfigError("evaluate needs exactly one of --population (DO targets) or --checkpoint")
    if args.population is not None and args.model not in DO_TARGETS:
        raise ConfigError(f"--model {args.model!r} with --population: valid targets are {', '.join(DO_TARGETS)}")
    with _logged(args.log, f"evaluate {args.model}"):
        r = evaluate(p, args.data, args.model, args.out, population=args.population, checkpoint=args.checkpoint,
                     state_path=args.state)
        print(f"{args.model}: clean {r['clean_accuracy']:.4f}, worst case {r['robust_accuracy']['worst_case']:.4f}")


def cmd_metrics(args):
    from doracle.evaluation.suite import merge_metrics

    p = _params(args, names=False)
    with _logged(args.log, "metrics"):
        m = merge_metrics(p, args.population, args.evaluation, args.out)
        for name, r in m["models"].items():
            print(f"{name:>16}: clean {r['clean_accuracy']:.4f}  worst case {r['robust_accuracy']['worst_case']:.4f}")


def cmd_report(args):
    from doracle.report.summary import write_report

    _params(args, names=False)
    with _logged(args.log, "report"):
        path = write_report(args.metrics, args.population, args.payoff, args.out)
    print(f"doracle: report written to {path}")


def cmd_check_params(args):
    from doracle import config

    p = _params(args)
    print(f"{args.params}: valid (experiment {p.experiment!r}, {p.do.iterations} DO iterations)")
    for w in config.warnings(p):
        print(f"warning: {w}", file=sys.stderr)


def cmd_dvc_yaml(args):
    from doracle.artifacts import atomic_write_bytes
    from doracle.pipeline import dvc_yaml_text

    text = dvc_yaml_text(_params(args), args.params)
    if args.check:
        current = Path(args.out).read_text() if Path(args.out).is_file() else ""
        if current != text:
            raise ConfigError(f"{args.out} is out of date with {args.params}: run `doracle dvc-yaml`")
        print(f"{args.out} is up to date")
        return
    atomic_write_bytes(args.out, text.encode())
    print(f"wrote {args.out}")


def register(sub) -> None:
    def common(p, params=True, log=True):
        if params:
            p.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        if log:
            p.add_argument("--log", help="write the job's output here; print one summary line")

    p = sub.add_parser("data", help="prepare the dataset split (train / payoff / test)")
    common(p)
    p.add_argument("--out", required=True, help="output .safetensors (a .json sidecar is written beside it)")
    p.set_defaults(handler=cmd_data)

    p = sub.add_parser("train", help="train the base model or a baseline classifier")
    common(p)
    p.add_argument("--role", choices=["base", "baseline"], required=True)
    p.add_argument("--method", help="defense name (baselines); the base model uses base.defense")
    p.add_argument("--data", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(handler=cmd_train)

    do = sub.add_parser("do", help="double-oracle iteration steps (one pipeline job each)")
    dsub = do.add_subparsers(dest="do_command", metavar="STEP", required=True)
    p = dsub.add_parser("init", help="iteration 0: base defender, attack against it, 1x1 payoff")
    common(p)
    p.add_argument("--data", required=True)
    p.add_argument("--base", required=True)
    p.add_argument("--attacker-out", required=True)
    p.add_argument("--out", required=True, help="population.json of iteration 0")
    p.set_defaults(handler=cmd_do_init)

    p = dsub.add_parser("best-response", help="train a defender / craft an attacker against the opponent mixture")
    common(p)
    p.add_argument("--player", choices=["defender", "attacker"], required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--state", required=True, help="population.json of the previous iteration")
    p.add_argument("--iteration", type=int, required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(handler=cmd_do_best_response)

    p = dsub.add_parser("payoff", help="extend the payoff matrix by the new row and column")
    common(p)
    for a in ("--data", "--state", "--defender", "--attacker", "--out"):
        p.add_argument(a, required=True)
    p.add_argument("--iteration", type=int, required=True)
    p.set_defaults(handler=cmd_do_payoff)

    p = dsub.add_parser("solve", help="solve the meta-game (LP by default) and compute the DO gap")
    common(p)
    for a in ("--state", "--payoff", "--out"):
        p.add_argument(a, required=True)
    p.set_defaults(handler=cmd_do_solve)

    p = dsub.add_parser("prune", help="prune the populations and test convergence")
    common(p)
    for a in ("--state", "--payoff", "--meta", "--out"):
        p.add_argument(a, required=True)
    p.set_defaults(handler=cmd_do_prune)

    p = sub.add_parser("evaluate", help="evaluate one model under the attack suite (resumable)",
                       description="Evaluate a DO target (do_mixture, do_best_member, do_uniform; with "
                                   "--population) or a checkpoint (with --checkpoint) under params.evaluation: "
                                   "gradient-masking checks, attacks on the mixture and its members, "
                                   "AutoAttack, per-example worst case, accuracy vs eps.")
    common(p)
    p.add_argument("--data", required=True)
    p.add_argument("--model", required=True, help="label: a DO target, or a baseline's name")
    p.add_argument("--population", help="final population.json (DO targets)")
    p.add_argument("--checkpoint", help="classifier .safetensors (baselines)")
    p.add_argument("--state", help="resumable state file: finished attacks survive a kill")
    p.add_argument("--out", required=True, help="evaluation JSON")
    p.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("metrics", help="merge the evaluations into metrics.json with the DO summary")
    common(p)
    p.add_argument("--population", required=True, help="final population.json")
    p.add_argument("--evaluation", nargs="+", required=True, help="evaluation JSON files")
    p.add_argument("--out", required=True, help="metrics.json")
    p.set_defaults(handler=cmd_metrics)

    p = sub.add_parser("report", help="write report/summary.md and its plots")
    common(p)
    for a in ("--metrics", "--population", "--payoff", "--out"):
        p.add_argument(a, required=True)
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser("check-params", help="validate params.yaml (schema and registry names)")
    common(p, log=False)
    p.set_defaults(handler=cmd_check_params)

    p = sub.add_parser("dvc-yaml", help="write dvc.yaml: the Snakemake jobs as DVC stages")
    common(p, log=False)
    p.add_argument("--out", default="dvc.yaml")
    p.add_argument("--check", action="store_true", help="fail if the file is out of date instead of writing")
    p.set_defaults(handler=cmd_dvc_yaml)
