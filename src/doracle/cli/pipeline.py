"""Pipeline subcommands: those of the jobs, read from the job table (:mod:`doracle.jobtable`), and the\nparams and dvc.yaml checks. Parsing only; work in the rooms."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from pathlib import Path

import yaml

from doracle import jobtable
from doracle.artifacts import atomic_write_bytes, read_json, write_json
from doracle.errors import ConfigError, printable


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
    try:  # never through a symbolic link: a linked log would overwrite the file it points to
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o666)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ConfigError(f"--log {path}: is a symbolic link; refusing to write through it (remove the link, "
                              "or give another path)") from None
        raise
    with open(fd, "w", buffering=1) as fh:
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
    # pydantic: every command's parser is built, only the job that runs reads params
    from doracle import artifacts, config

    p = config.load_complete(args.params)
    if names:
        # the registries: only for the jobs that check names
        from doracle.games.checks import check_names

        check_names(p, str(args.params))
    artifacts.expect_experiment(p.experiment)  # refuse artifacts another experiment wrote
    return p


def cmd_data(args):
    # torch: the data job's own
    from doracle.data import prepare

    p = _params(args, names=False)
    with _logged(args.log, f"data {p.data.dataset}"):
        meta = prepare(p, args.out)
        print(f"prepared {meta['dataset']}: " + ", ".join(f"{k} {v}" for k, v in meta["splits"].items()))


def _game(p):
    # pydantic and the game registry: only the job that runs
    from doracle.games import game_of

    return game_of(p)


def _uses(args, needed=()) -> dict[str, str]:
    """``--uses ROLE=PATH`` options as a dict (models trained outside the DO loop); every role in
    ``needed`` must be given."""
    out = {}
    for item in args.uses or []:
        role, sep, path = item.partition("=")
        if not sep or not role or not path:
            raise ConfigError(f"--uses {item!r}: expected ROLE=PATH, e.g. reference=results/x/reference/model.safetensors")
        out[role] = path
    missing = [r for r in needed if r not in out]
    if missing:
        raise ConfigError(f"this job needs --uses {missing[0]}=PATH (the {missing[0]} model, trained by "
                          f"`doracle train --role {missing[0]}`)")
    return out


def cmd_train(args):
    p = _params(args)
    if args.role == "baseline" and not args.method:
        raise ConfigError("--method is required with --role baseline")
    game = _game(p)
    valid = (*game.train_roles(p), "baseline")
    if args.role not in valid:
        raise ConfigError(f"--role {args.role!r}: the {p.game} game trains {', '.join(valid)}")
    uses = _uses(args)
    with _logged(args.log, f"train {args.role} {args.method or ''}".rstrip()):
        print(game.train(p, args.role, args.method, args.data, args.out, uses=uses))


def cmd_do_init(args):
    p = _params(args)
    game = _game(p)
    uses = _uses(args, game.init_roles(p))
    with _logged(args.log, "do init"):
        print(game.init(p, args.data, uses, args.init_out, args.out))


def cmd_do_best_response(args):
    p = _params(args)
    game = _game(p)
    responders = game.responders(p)
    if args.player not in responders:
        how = "" if tuple(responders) == game.players else f" ({', '.join(responders)} with these params)"
        raise ConfigError(f"--player {args.player!r}: the {p.game} game's players are {', '.join(game.players)}"
                          f"{how}")
    with _logged(args.log, f"it{args.iteration:03d} best response ({args.player})"):
        print(game.best_response(p, args.player, args.data, args.state, args.iteration, args.out))


def cmd_do_payoff(args):
    p = _params(args, names=False)
    with _logged(args.log, f"it{args.iteration:03d} payoff"):
        doc = _game(p).payoff(p, args.data, args.state, args.iteration, args.row, args.col, args.out)
        print("skipped (converged)" if doc.get("skipped") else f"evaluated {doc['cells_evaluated']} new cells")


def cmd_do_solve(args):
    # numpy and the engine: this command's own
    from doracle.games.population import solve_meta

    p = _params(args, names=False)
    with _logged(args.log, "solve"):
        doc = solve_meta(p, args.state, args.payoff, args.out)
        print(f"value {doc['solution']['value']:.4f}" + ("" if doc["skipped"] else f", gap {doc['gap']:.4g}"))


def cmd_do_prune(args):
    # numpy and the engine: this command's own
    from doracle.games.population import prune

    p = _params(args, names=False)
    with _logged(args.log, "prune"):
        doc = prune(p, args.state, args.payoff, args.meta, args.out)
        st = doc["state"]
        print(f"population {len(st['row_ids'])}x{len(st['col_ids'])}, converged {st['converged']}")


def cmd_do_close(args):
    p = _params(args)
    with _logged(args.log, "closing best response"):
        print(_game(p).close(p, args.data, args.state, args.model_out, args.out))


def cmd_evaluate(args):
    p = _params(args)
    game = _game(p)
    if (args.population is None) == (args.checkpoint is None):
        raise ConfigError("evaluate needs exactly one of --population (DO targets) or --checkpoint")
    if args.population is not None and args.model not in game.targets(p):
        raise ConfigError(f"--model {args.model!r} with --population: valid targets are {', '.join(game.targets(p))}")
    uses = _uses(args, game.eval_roles(p))
    with _logged(args.log, f"evaluate {args.model}"):
        print(game.evaluate(p, args.data, args.model, args.out, population=args.population,
                            checkpoint=args.checkpoint, state_path=args.state, uses=uses))


def cmd_metrics(args):
    p = _params(args, names=False)
    with _logged(args.log, "metrics"):
        game = _game(p)
        print(game.metrics(p, args.population, args.evaluation, args.out))
        if args.headline:
            write_json(args.headline, game.headline_metrics(read_json(args.out)), sealed=False)


def cmd_report(args):
    p = _params(args, names=False)
    with _logged(args.log, "report"):
        path = _game(p).report(p, args.metrics, args.population, args.payoff, args.out)
    print(f"doracle: report written to {path} and {path.with_name('index.html')}")


def cmd_job(args):
    """A job shape without a handler of its own: its game method (``runs="Game.<method>"``), called
    with the params and the command's options as keyword arguments."""
    shape = next(s for s in jobtable.SHAPES.values() if s.command == args.job_command)
    method = shape.runs.removeprefix("Game.")
    p = _params(args, names=False)
    options = {a.dest: getattr(args, a.dest) for a in jobtable.SUBCOMMANDS[args.job_command].args}
    with _logged(args.log, " ".join(args.job_command)):
        print(getattr(_game(p), method)(p, **options))


#: the help of a group of subcommands (`doracle do STEP`)
GROUPS = {"do": "double-oracle iteration steps (one pipeline job each)"}


def cmd_check_params(args):
    # pydantic: every command's parser is built, only this one runs
    from doracle import config

    p, raw, base, source = config.load_resolved(args.params)
    # the registries: only for the jobs that check names
    from doracle.games.checks import check_names

    check_names(p, source)
    how = f"partial: completed from {base}, as the workflow completes it" if base else "complete"
    print(printable(f"{args.params}: valid (experiment {p.experiment!r}, game {p.game}, {p.do.iterations} DO "
                    f"iterations; {how})"))
    if (line := config.payoff_statement(p)) is not None:
        print(line)
    for w in _game(p).warnings(p):
        print(f"warning: {printable(w)}", file=sys.stderr)
    if args.resolved:
        atomic_write_bytes(args.resolved, yaml.safe_dump(raw, sort_keys=False, width=1000).encode())
        print(f"wrote the complete params to {args.resolved}")


def cmd_dvc_yaml(args):
    # pydantic and the job graph: this command's own
    from doracle import config
    from doracle.pipeline import default_experiments, dvc_yaml_text, load_experiments

    files = args.params or default_experiments()
    for f in files:
        if config.resolve(f)[1]:
            raise ConfigError(f"{f} is a partial params file: DVC tracks keys in the file its stages read, so "
                              f"dvc.yaml needs a complete one. Write it with `doracle check-params --params {f} "
                              f"--resolved complete.yaml` and pass that")
    text = dvc_yaml_text(load_experiments(files), args.out)
    if args.check:
        current = Path(args.out).read_text() if Path(args.out).is_file() else ""
        if current != text:
            raise ConfigError(f"{args.out} is out of date with {' '.join(files)} (do.iterations, baselines.methods or matched, "
                              f"experiment or game changed, or the pipeline did): run `doracle dvc-yaml"
                              f"{'' if files == default_experiments() else ' --params ' + ' '.join(files)}` first, then rerun")
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

    # the jobs' subcommands, from the job table (doracle.jobtable.SUBCOMMANDS)
    groups: dict[str, object] = {}
    for path, command in jobtable.SUBCOMMANDS.items():
        parent = sub
        if len(path) == 2:
            if path[0] not in groups:
                group = sub.add_parser(path[0], help=GROUPS.get(path[0]))
                groups[path[0]] = group.add_subparsers(dest=f"{path[0]}_command", metavar="STEP", required=True)
            parent = groups[path[0]]
        p = parent.add_parser(path[-1], help=command.help, description=command.description)
        common(p)
        for arg in command.args:
            p.add_argument(arg.flag, help=arg.help, **({"required": True} if arg.required else {}), **dict(arg.kw))
        p.set_defaults(handler=globals()[command.handler] if command.handler else cmd_job, job_command=path)

    p = sub.add_parser("check-params", help="validate a params file (schema and registry names); a partial "
                                             "file is completed from its game's default file, as the workflow does")
    common(p, log=False)
    p.add_argument("--resolved", metavar="OUT", help="also write the complete (resolved) params to OUT")
    p.set_defaults(handler=cmd_check_params)

    p = sub.add_parser("dvc-yaml", help="write dvc.yaml: the Snakemake jobs as DVC stages")
    p.add_argument("--params", nargs="+", help="params files, one experiment each (default: params.yaml and "
                                               "every params-*.yaml beside it, as snakemake -c2 runs them)")
    p.add_argument("--out", default="dvc.yaml")
    p.add_argument("--check", action="store_true", help="fail if the file is out of date instead of writing")
    p.set_defaults(handler=cmd_dvc_yaml)
