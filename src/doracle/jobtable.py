"""The job table: one declaration per job shape, read by everything that runs a job.

A :class:`JobShape` holds what a kind of pipeline job is: the ``doracle`` subcommand it calls and
how the job fills that command's options from its inputs, outputs, wildcards and params; its
output patterns; the params stages it reads; its resource family (``None``: a local rule, run on
the submitting host); the package code it runs; its scheduling priority; what it dispatches to;
and how it expands into concrete jobs for an experiment. A :class:`Command` holds a subcommand's
arguments (argparse) and help. From these:

* the Snakemake rules (``workflow/rules/jobs.smk``: one loop, a rule per shape, named by Snakemake's
  ``name:`` directive) and their localrules;
* the job graph (:func:`doracle.games.graph.jobs`) and from it ``dvc.yaml``'s stages;
* the ``doracle`` subcommands of the jobs (:mod:`doracle.cli.pipeline`);
* the cluster resources per rule (:mod:`doracle.pipeline`) and the code digests and DVC ``deps``
  per rule (:mod:`doracle.provenance`).

Adding a job shape is one :func:`register` call (its shape and its command) plus the game method it
dispatches to (``runs="Game.<method>"``; the CLI's generic handler calls it with the command's
options). tests/test_jobtable.py adds a toy one and finds it in the DAG, dvc.yaml and ``--help``.

Pure data and string functions: the foundation layer (no torch, no game imported).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from doracle import provenance
from doracle.paths import PATTERNS, it3, sidecar, state_path

# ---------------------------------------------------------------------------------------------
# the declarations


@dataclass(frozen=True)
class Arg:
    """One option of a subcommand: argparse's ``add_argument(flag, **kw)``."""

    flag: str
    help: str | None = None
    required: bool = False
    kw: tuple[tuple[str, Any], ...] = ()  # further add_argument keywords (type, nargs, action, metavar, default)

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Command:
    """A ``doracle`` subcommand a job shape calls (two shapes may share one: train, evaluate)."""

    path: tuple[str, ...]  # ("do", "best-response") for `doracle do best-response`
    help: str
    args: tuple[Arg, ...]
    #: the name of its handler in doracle.cli.pipeline; None: the generic one, which calls the game
    #: method of its job shape (``runs="Game.<method>"``) with the options as keyword arguments
    handler: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class Job:
    """One concrete job of a shape, as its expansion yields it (outputs come from the shape)."""

    name: str
    inputs: dict[str, str]
    wildcards: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)  # extras beside the params file (--uses ..., states)


@dataclass(frozen=True)
class Context:
    """What a shape's expansion knows: the experiment's params and game (dispatched by name)."""

    params: Any
    game: Any

    @property
    def exp(self) -> str:
        return self.params.experiment

    def p(self, name: str, **wildcards) -> str:
        return PATTERNS[name].format(exp=self.exp, **wildcards)


@dataclass(frozen=True)
class JobShape:
    rule: str
    command: tuple[str, ...]  # the Command's path
    #: how a job fills the command's options, in order: (flag, value template); a flag of None
    #: appends the value as it stands (``{params.uses}``: options the job renders, maybe none)
    argv: tuple[tuple[str | None, str], ...]
    #: output name -> path pattern (``{exp}`` and the shape's wildcards); the first names the log
    outputs: tuple[tuple[str, str], ...]
    #: the params stages a job reads, from its wildcards (COMMON_STAGE_PARAMS or Game.stage_params)
    stages: Callable[[dict], tuple[str, ...]]
    #: the jobs of an experiment: Context -> [Job]
    expand: Callable[[Context], list[Job]]
    #: the family of params.resources its jobs ask a cluster for; None: a local rule
    resources: str | None
    #: package paths it runs besides provenance.CORE (its code digest and DVC deps)
    code: tuple[str, ...]
    #: what the command dispatches to: "Game.<method>" or a module's function
    runs: str
    #: order in the job graph (dvc.yaml): phase, then iteration, then the table's order
    phase: int
    #: Snakemake's priority: a number, or a function of the job's wildcards
    priority: int | Callable[[Any], int] = 0
    #: a folder output marked for `snakemake --report` (the report rule)
    report_folder: bool = False
    #: its jobs also declare as inputs the JSON outputs of every job upstream of their own inputs
    #: (data preparation excepted): what they read to account for that work (passes, wall seconds,
    #: a DO run's budget), so every file a job reads is an input Snakemake and DVC know of
    reads_upstream: bool = False
    doc: str = ""

    @property
    def cmd(self) -> str:
        """The job's command template (Snakemake's ``shell:``; DVC's ``cmd`` once formatted)."""
        out = "doracle " + " ".join(self.command)
        for flag, value in self.argv:
            out += value if flag is None else f" {flag} {value}"
        return out

    def output_patterns(self) -> dict[str, str]:
        return dict(self.outputs)

    def outputs_of(self, exp: str, wildcards: dict) -> dict[str, str]:
        return {k: v.format(exp=exp, **wildcards) for k, v in self.outputs}


#: the shapes in the table's order, and the subcommands they call
SHAPES: dict[str, JobShape] = {}
SUBCOMMANDS: dict[tuple[str, ...], Command] = {}


def register(shape: JobShape, command: Command | None = None) -> JobShape:
    """Add a job shape (and the command it calls, when new) to the table."""
    if shape.rule in SHAPES:
        raise ValueError(f"job shape {shape.rule!r} is already in the table")
    if command is not None:
        if command.path != shape.command:
            raise ValueError(f"job shape {shape.rule!r} calls {shape.command}, not {command.path}")
        SUBCOMMANDS[command.path] = command
    if shape.command not in SUBCOMMANDS:
        raise ValueError(f"job shape {shape.rule!r}: no command {' '.join(shape.command)!r} in the table")
    flags = {a.flag for a in SUBCOMMANDS[shape.command].args} | {"--params", "--log"}
    unknown = [f for f, _ in shape.argv if f is not None and f not in flags]
    if unknown:
        raise ValueError(f"job shape {shape.rule!r} passes {unknown}, which {' '.join(shape.command)!r} does not take")
    SHAPES[shape.rule] = shape
    return shape


def unregister(rule: str) -> None:
    """Remove a job shape (and its command, when no other shape calls it): for tests."""
    shape = SHAPES.pop(rule)
    if not any(s.command == shape.command for s in SHAPES.values()):
        SUBCOMMANDS.pop(shape.command, None)


def local_rules() -> tuple[str, ...]:
    return tuple(r for r, s in SHAPES.items() if s.resources is None)


def code_paths(rule: str) -> tuple[str, ...]:
    """The package paths (relative to the package folder) a rule's job runs: provenance.CORE and the
    shape's own, without a file that one of its folders already covers."""
    paths = (*provenance.CORE, *SHAPES[rule].code)
    return tuple(p for p in paths if not any(p.startswith(q + "/") for q in paths))


def code_digest(rule: str) -> str:
    """sha256 of the code a rule's job runs (a Snakemake param: changed code reruns the job)."""
    return provenance.code_digest(code_paths(rule))


def code_deps(rule: str) -> list[str]:
    """The rule's code as DVC ``deps`` (src/doracle/...)."""
    return provenance.code_deps(code_paths(rule))


# ---------------------------------------------------------------------------------------------
# the subcommands the jobs call

def _a(flag, help=None, required=False, **kw) -> Arg:
    return Arg(flag, help, required, tuple(kw.items()))


_DATA = _a("--data", required=True)
_USES = _a("--uses", "a model trained outside the loop", action="append", metavar="ROLE=PATH")

for _c in (
    Command(("data",), "prepare the dataset split (train / payoff / test)", (
        _a("--out", "output .safetensors (a .json sidecar is written beside it)", True),), "cmd_data"),
    Command(("train",), "train a model outside the DO loop (the game's roles, or a baseline)", (
        _a("--role", "base | reference | baseline (which ones: the game's)", True),
        _a("--method", "the baseline's method (AT: a defense, or <baselines.matched_defense>_epochs | _passes with "
           "--uses population=PATH; the base model uses base.defense; GAN: base_gan, or base_gan_passes with "
           "--uses population=PATH)"),
        _DATA,
        _a("--uses", "a pipeline file the job reads (the matched baselines, AT pgd_at_* and GAN base_gan_passes: "
           "population=the closed DO population)", action="append", metavar="NAME=PATH"),
        _a("--out", required=True)), "cmd_train",
        "Train one model of the experiment's game outside the DO loop: AT: the base classifier (--role base) or a "
        "baseline defense (--role baseline --method M; the matched pgd_at_epochs / pgd_at_passes read the closed "
        "DO population: DO's defender epochs / counted passes); GAN: the reference classifier that scores "
        "generated images (--role reference) or a base GAN (--role baseline --method base_gan: the DO run's "
        "player-epochs; base_gan_passes: its counted passes)."),
    Command(("do", "init"), "iteration 0: the first strategies and their 1x1 payoff", (
        _DATA, _USES,
        _a("--init-out", "the strategies iteration 0 adds (.safetensors)", True),
        _a("--out", "population.json of iteration 0", True)), "cmd_do_init",
        "AT: the attack against the base defender (--uses base=PATH); GAN: a warm-up of ordinary GAN training "
        "gives the first generator and discriminator."),
    Command(("do", "best-response"), "a player's best response to the opponent's meta-strategy", (
        _a("--player", "AT: defender | attacker; GAN: pair (gan.oracle: cotrained, both players together) or "
           "discriminator | generator (gan.oracle: frozen)", True),
        _DATA,
        _a("--state", "population.json of the previous iteration", True),
        _a("--iteration", required=True, type=int),
        _a("--out", required=True)), "cmd_do_best_response",
        "AT: train a defender / craft an attacker; GAN: train a generator / a discriminator, against the other "
        "player's mixture."),
    Command(("do", "payoff"), "extend the payoff matrix by the new row and column", (
        _DATA, _a("--state", required=True), _a("--out", required=True),
        _a("--row", "the row player's new strategy (AT: defender; GAN: discriminator)", True),
        _a("--col", "the column player's new strategy (AT: attacker; GAN: generator)", True),
        _a("--iteration", required=True, type=int)), "cmd_do_payoff"),
    Command(("do", "solve"), "solve the meta-game (LP by default) and compute the DO gap", (
        _a("--state", required=True), _a("--payoff", required=True), _a("--out", required=True)), "cmd_do_solve"),
    Command(("do", "prune"), "prune the populations and test convergence", (
        _a("--state", required=True), _a("--payoff", required=True), _a("--meta", required=True),
        _a("--out", required=True)), "cmd_do_prune"),
    Command(("do", "close"), "the closing best response: exploitability of the deployed mixture", (
        _DATA,
        _a("--state", "population.json of the last iteration", True),
        _a("--model-out", "the closing strategy (.safetensors)", True),
        _a("--out", "the closed population.json", True)), "cmd_do_close",
        "After the last iteration: the deployed player's opponent (AT: an attacker, on the payoff split; GAN: a "
        "discriminator) answers the deployed player's final meta-strategy; its gain over the game value is the "
        "deployed mixture's exploitability. Its row or column joins the payoff matrix and the meta-game is solved "
        "once more: the evaluations read the closed population."),
    Command(("evaluate",), "evaluate one DO target or baseline (AT: attack suite; GAN: FID, IS)", (
        _DATA,
        _a("--model", "label: a DO target, or a baseline's name", True),
        _a("--population", "the closed population.json (DO targets; do/closing/)"),
        _a("--checkpoint", "the baseline's .safetensors"),
        _USES,
        _a("--state", "resumable state file: finished attacks survive a kill"),
        _a("--out", "evaluation JSON", True)), "cmd_evaluate",
        "Evaluate a DO target (with --population) or a baseline (with --checkpoint). AT (do_mixture, "
        "do_best_member, do_uniform): params.evaluation's suite, resumable: gradient-masking checks, attacks on "
        "the mixture and its members, AutoAttack, per-example worst case, accuracy vs eps. GAN (do_mixture, "
        "do_members): FID, Inception-Score-style score, classes covered, precision / recall / density / coverage "
        "in the reference classifier's features (--uses reference=PATH)."),
    Command(("metrics",), "merge the evaluations into metrics.json with the DO summary", (
        _a("--population", "the closed population.json (do/closing/)", True),
        _a("--evaluation", "evaluation JSON files", True, nargs="+"),
        _a("--out", "metrics.json", True),
        _a("--headline", "headline.json: the headline numbers, flat (DVC's metrics file)")), "cmd_metrics"),
    Command(("report",), "write the report folder: index.html (self-contained), summary.md, the plots", (
        _a("--metrics", required=True), _a("--population", required=True), _a("--payoff", required=True),
        _a("--out", "the report folder (written whole, then moved into place)", True)), "cmd_report"),
):
    SUBCOMMANDS[_c.path] = _c


# ---------------------------------------------------------------------------------------------
# the job shapes, in pipeline order

#: the torch side a network job runs (package paths; provenance.CORE is added to every shape's)
NETS = ("data", "models", "attacks", "defenses", "games")
_P = ("--params", "{params.file}")
_LOG = ("--log", "{log}")
_USES_OPT = (None, "{params.uses}")


def _uses(paths: dict[str, str]) -> str:
    """The ``--uses ROLE=PATH`` options of a job reading models trained outside the DO loop."""
    return "".join(f" --uses {role}={path}" for role, path in paths.items())


def _iterations(ctx: Context):
    return [(t, it3(t), it3(t - 1)) for t in range(1, ctx.params.do.iterations + 1)]


def _x_train(ctx):
    return [Job(f"train_{r}", {"data": ctx.p("data")}, {"role": r}) for r in ctx.game.train_roles(ctx.params)]


def _x_baselines(ctx):
    out = []
    for m in ctx.game.baselines(ctx.params):
        uses = ctx.game.baseline_uses(ctx.params, m)
        out.append(Job(f"train_baseline_{m}", {"data": ctx.p("data"), **uses}, {"method": m}, {"uses": _uses(uses)}))
    return out


def _x_init(ctx):
    uses = {r: ctx.p("model", role=r) for r in ctx.game.init_roles(ctx.params)}
    return [Job("do_init", {"data": ctx.p("data"), **uses}, {}, {"uses": _uses(uses)})]


def _x_best_response(ctx):
    # one job per player, or one per pair of players trained together (Game.responders)
    return [Job(f"best_response_{r}_it{it}", {"data": ctx.p("data"), "state": ctx.p("population", it=prev)},
                {"it": it, "player": r})
            for _, it, prev in _iterations(ctx) for r in ctx.game.responders(ctx.params)]


def _new_strategies(ctx, it: str) -> dict[str, str]:
    """Each player's new strategy of iteration ``it``: the file of the job that answers for it."""
    return {player: ctx.p("strategy", it=it, player=r)
            for r, players in ctx.game.responders(ctx.params).items() for player in players}


def _x_payoff(ctx):
    row, col = ctx.game.players
    out = []
    for _, it, prev in _iterations(ctx):
        new = _new_strategies(ctx, it)
        out.append(Job(f"payoff_it{it}", {"data": ctx.p("data"), "state": ctx.p("population", it=prev),
                                          "row": new[row], "col": new[col]}, {"it": it}))
    return out


def _x_solve(ctx):
    return [Job(f"solve_it{it}", {"state": ctx.p("population", it=prev), "payoff": ctx.p("payoff", it=it)}, {"it": it})
            for _, it, prev in _iterations(ctx)]


def _x_prune(ctx):
    return [Job(f"prune_it{it}", {"state": ctx.p("population", it=prev), "payoff": ctx.p("payoff", it=it),
                                  "meta": ctx.p("meta", it=it)}, {"it": it})
            for _, it, prev in _iterations(ctx)]


def _x_close(ctx):
    return [Job("close", {"data": ctx.p("data"), "state": ctx.p("population", it=it3(ctx.params.do.iterations))})]


def _eval_uses(ctx) -> dict[str, str]:
    return {r: ctx.p("model", role=r) for r in ctx.game.eval_roles(ctx.params)}


def _x_evaluate_do(ctx):
    uses = _eval_uses(ctx)
    return [Job(f"evaluate_{t}", {"data": ctx.p("data"), "population": ctx.p("closed"), **uses}, {"target": t},
                {"state": state_path(ctx.p("evaluation_do", target=t)), "uses": _uses(uses)})
            for t in ctx.game.targets(ctx.params)]


def _x_evaluate_baseline(ctx):
    uses = _eval_uses(ctx)
    return [Job(f"evaluate_baseline_{m}", {"data": ctx.p("data"), "model": ctx.p("baseline", method=m), **uses},
                {"method": m}, {"state": state_path(ctx.p("evaluation_baseline", method=m)), "uses": _uses(uses)})
            for m in ctx.game.baselines(ctx.params)]


def evaluations(ctx: Context) -> list[str]:
    """Every evaluation file of the experiment: the DO targets', then the baselines'."""
    return ([ctx.p("evaluation_do", target=t) for t in ctx.game.targets(ctx.params)]
            + [ctx.p("evaluation_baseline", method=m) for m in ctx.game.baselines(ctx.params)])


def _x_metrics(ctx):
    evs = evaluations(ctx)
    return [Job("metrics", {"population": ctx.p("closed"), **{f"evaluation_{k}": v for k, v in enumerate(evs)}},
                {}, {"evaluations": " ".join(evs)})]


def _x_report(ctx):
    # the report reads the evaluations too (the GAN report's sample grids, drawn by its evaluation jobs)
    evs = evaluations(ctx)
    return [Job("report", {"metrics": ctx.p("metrics"), "population": ctx.p("closed"),
                           "payoff": ctx.p("payoff", it=it3(ctx.params.do.iterations)),
                           **{f"evaluation_{k}": v for k, v in enumerate(evs)}})]


def _model(pattern: str) -> tuple[tuple[str, str], ...]:
    return (("model", pattern), ("model_meta", sidecar(pattern)))


_POP0 = PATTERNS["population"].replace("{it}", "000")

for _s in (
    JobShape("prepare_data", ("data",), (_P, ("--out", "{output.data}"), _LOG),
             (("data", PATTERNS["data"]), ("data_meta", sidecar(PATTERNS["data"]))),
             lambda w: ("data",), lambda ctx: [Job("prepare_data", {})], None, ("data",), "doracle.data.prepare", 0,
             doc="the deterministic train / payoff / test split (digits offline; MNIST, CIFAR-10, SVHN, "
                 "TinyImageNet downloaded: on the submitting host, whose network compute nodes may lack)"),
    JobShape("train", ("train",), (_P, ("--role", "{wildcards.role}"), ("--data", "{input.data}"),
                                   ("--out", "{output.model}"), _LOG),
             _model(PATTERNS["model"]), lambda w: ("train", w.get("role", "")), _x_train, "train", NETS, "Game.train",
             1, priority=10, doc="models trained once outside the DO loop (AT: base, DO's first defender; GAN: "
                                 "reference, the classifier that scores generated images)"),
    JobShape("train_baseline", ("train",),
             (_P, ("--role", "baseline"), ("--method", "{wildcards.method}"), ("--data", "{input.data}"), _USES_OPT,
              ("--out", "{output.model}"), _LOG),
             _model(PATTERNS["baseline"]), lambda w: ("train", "baseline"), _x_baselines, "train", NETS, "Game.train",
             2, reads_upstream=True,  # a matched baseline reads the DO run's records for its budget
             doc="one baseline per method; baselines fill the cores the DO chain leaves free"),
    JobShape("do_init", ("do", "init"),
             (_P, ("--data", "{input.data}"), _USES_OPT, ("--init-out", "{output.init}"),
              ("--out", "{output.population}"), _LOG),
             (("population", _POP0), ("init", PATTERNS["init"]), ("init_meta", sidecar(PATTERNS["init"]))),
             lambda w: ("init",), _x_init, "best_response", NETS, "Game.init", 3, priority=10,
             doc="iteration 000: both populations' first strategies and their payoff"),
    JobShape("best_response", ("do", "best-response"),
             (("--player", "{wildcards.player}"), _P, ("--data", "{input.data}"), ("--state", "{input.state}"),
              ("--iteration", "{wildcards.it}"), ("--out", "{output.model}"), _LOG),
             _model(PATTERNS["strategy"]), lambda w: (f"best_response_{w.get('player')}",), _x_best_response,
             "best_response", NETS, "Game.best_response", 4, priority=10,
             doc="iteration t >= 1 reads population.json of t-1: a best response per player ({player}: AT "
                 "defender / attacker, GAN discriminator / generator, or a GAN pair trained together: gan.oracle "
                 "cotrained). After convergence later iterations pass the state through, so the DAG is the same "
                 "for every run; the chain is the critical path: its jobs go first (priority)"),
    JobShape("payoff", ("do", "payoff"),
             (_P, ("--data", "{input.data}"), ("--state", "{input.state}"), ("--iteration", "{wildcards.it}"),
              ("--row", "{input.row}"), ("--col", "{input.col}"), ("--out", "{output.payoff}"), _LOG),
             (("payoff", PATTERNS["payoff"]),), lambda w: ("payoff",), _x_payoff, "payoff", NETS, "Game.payoff", 4,
             priority=10, doc="the new payoff row and column (forward passes)"),
    JobShape("solve", ("do", "solve"),
             (_P, ("--state", "{input.state}"), ("--payoff", "{input.payoff}"), ("--out", "{output.meta}"), _LOG),
             (("meta", PATTERNS["meta"]),), lambda w: ("solve",), _x_solve, None, (),
             "doracle.games.population.solve_meta", 4, priority=10, doc="the meta-solve (LP) and the DO gap"),
    JobShape("prune", ("do", "prune"),
             (_P, ("--state", "{input.state}"), ("--payoff", "{input.payoff}"), ("--meta", "{input.meta}"),
              ("--out", "{output.population}"), _LOG),
             (("population", PATTERNS["population"]),), lambda w: ("prune",), _x_prune, None, (),
             "doracle.games.population.prune", 4, priority=10, doc="pruning and the convergence test"),
    JobShape("close", ("do", "close"),
             (_P, ("--data", "{input.data}"), ("--state", "{input.state}"), ("--model-out", "{output.model}"),
              ("--out", "{output.population}"), _LOG),
             (("population", PATTERNS["closed"]), *_model(PATTERNS["closing_model"])), lambda w: ("closing",),
             _x_close, "best_response", NETS, "Game.close", 5, priority=10,
             doc="after the last iteration the deployed player's opponent answers its final meta-strategy, adds "
                 "its row or column and the meta-game is solved once more: evaluation reads that closed "
                 "population"),
    JobShape("evaluate_do", ("evaluate",),
             (_P, ("--data", "{input.data}"), ("--model", "{wildcards.target}"),
              ("--population", "{input.population}"), _USES_OPT, ("--state", "{params.state}"),
              ("--out", "{output.evaluation}"), _LOG),
             (("evaluation", PATTERNS["evaluation_do"]),), lambda w: ("evaluate",), _x_evaluate_do, "evaluate",
             (*NETS, "evaluation"), "Game.evaluate", 6,
             # after the chain these are the critical path; the largest mixture first
             priority=lambda w: {"do_uniform": 9, "do_mixture": 8}.get(w.target, 7),
             doc="one job per DO target (AT: the DO mixture, its best member, the uniform mixture; GAN: the "
                 "generator mixture, the final generators)"),
    JobShape("evaluate_baseline", ("evaluate",),
             (_P, ("--data", "{input.data}"), ("--model", "{wildcards.method}"), ("--checkpoint", "{input.model}"),
              _USES_OPT, ("--state", "{params.state}"), ("--out", "{output.evaluation}"), _LOG),
             (("evaluation", PATTERNS["evaluation_baseline"]),), lambda w: ("evaluate",), _x_evaluate_baseline,
             "evaluate", (*NETS, "evaluation"), "Game.evaluate", 7, doc="one job per baseline"),
    JobShape("metrics", ("metrics",),
             (_P, ("--population", "{input.population}"), ("--evaluation", "{params.evaluations}"),
              ("--out", "{output.metrics}"), ("--headline", "{output.headline}"), _LOG),
             (("metrics", PATTERNS["metrics"]), ("headline", PATTERNS["headline"])), lambda w: ("metrics",),
             _x_metrics, None, (*NETS, "evaluation"), "Game.metrics", 8,
             reads_upstream=True,  # every model's compute: the records of the jobs that produced it
             doc="the evaluations merged into metrics.json, with headline.json (DVC's metrics)"),
    JobShape("report", ("report",),
             (_P, ("--metrics", "{input.metrics}"), ("--population", "{input.population}"),
              ("--payoff", "{input.payoff}"), ("--out", "{output.report}"), _LOG),
             (("report", PATTERNS["report"]),), lambda w: ("report",), _x_report, None,
             (*NETS, "evaluation", "report"), "Game.report", 9, report_folder=True,
             reads_upstream=True,  # the population table: each DO strategy's record
             doc="a folder: index.html, summary.md, methods.csv and the game's plots, marked for "
                 "`snakemake --report` (captions in workflow/report/)"),
):
    register(_s)
