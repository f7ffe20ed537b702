"""The job table (doracle.jobtable): one declaration per job shape, read by the Snakemake rules,
dvc.yaml, the CLI, the cluster resources and the code digests. A toy job shape added here, as a
user would add one (a ``register`` call plus its game method), shows up in each of them."""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

from doracle import config, jobtable, pipeline
from doracle.cli import build_parser
from doracle.cli import main as cli_main
from doracle.games import GAMES, Game
from project import ROOT

TOY_MODULE = '''
from doracle import jobtable
from doracle.jobtable import Arg, Command, Job, JobShape

jobtable.register(
    JobShape("toy", ("toy",), (("--params", "{params.file}"), ("--population", "{input.population}"),
                               ("--out", "{output.out}"), ("--log", "{log}")),
             (("out", "results/{exp}/toy.json"),), lambda w: ("metrics",),
             lambda ctx: [Job("toy", {"population": ctx.p("closed")})], None, (), "Game.toy", 8,
             doc="a toy job: the number of strategies in the closed population"),
    Command(("toy",), "count the closed population's strategies (a toy job shape)",
            (Arg("--population", "the closed population.json", True), Arg("--out", "toy.json", True))))
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """The toy shape in the table (as its module registers it), and its game method on the AT game."""
    (tmp_path / "toy_shape.py").write_text(TOY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("toy_shape", None)
    import toy_shape  # noqa: F401

    def method(self, params, population, out):
        n = len(json.loads(open(population).read())["state"]["row_ids"])
        with open(out, "w") as fh:
            json.dump({"strategies": n, "experiment": params.experiment}, fh)
        return f"{n} strategies"

    monkeypatch.setattr(type(GAMES.get("at")), "toy", method, raising=False)
    yield tmp_path
    jobtable.unregister("toy")
    sys.modules.pop("toy_shape", None)


def test_a_job_shape_is_one_entry(toy, tmp_path):
    params = config.load(ROOT / "params.yaml")
    toy_jobs = [j for j in pipeline.jobs(params) if j["rule"] == "toy"]
    assert len(toy_jobs) == 1
    job = toy_jobs[0]
    assert job["cmd"] == ("doracle toy --params params.yaml --population results/digits/do/closing/population.json "
                          "--out results/digits/toy.json --log logs/digits/toy.log")
    assert job["outputs"] == {"out": "results/digits/toy.json"}
    # after the evaluations (phase 8, as metrics), before the report (9)
    rules = [j["rule"] for j in pipeline.jobs(params)]
    assert rules.index("toy") > rules.index("evaluate_baseline") and rules.index("toy") < rules.index("report")

    # dvc.yaml: a stage with its command, its input, its code and the params it reads
    stage = pipeline.dvc_stages([(params, "params.yaml")])["stages"]["toy"]
    assert stage["cmd"] == job["cmd"] and stage["outs"] == ["results/digits/toy.json"]
    assert "results/digits/do/closing/population.json" in stage["deps"]
    assert "src/doracle/jobtable.py" in stage["deps"]
    assert stage["params"] == pipeline.stage_keys(params, "metrics")

    # the CLI: a subcommand with its options, in --help
    parser = build_parser()
    assert "toy" in parser.format_help()
    sub = next(a for a in parser._actions if a.dest == "command").choices["toy"]
    assert {"--population", "--out", "--params", "--log"} <= {o for a in sub._actions for o in a.option_strings}

    # resources: a local rule; its code digest covers the core
    assert "toy" in jobtable.local_rules() and pipeline.rule_resources(params, "toy") == {}
    assert jobtable.code_paths("toy") == jobtable.provenance.CORE


def test_the_toy_job_runs_through_the_generic_handler(toy, tmp_path):
    """No handler of its own: the CLI calls the game method with the command's options."""
    pop = tmp_path / "population.json"
    pop.write_text(json.dumps({"state": {"row_ids": ["d000", "d001", "d002"]}}))
    out = tmp_path / "toy.json"
    assert cli_main(["toy", "--params", str(ROOT / "params.yaml"), "--population", str(pop), "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == {"strategies": 3, "experiment": "digits"}


def test_the_toy_job_is_in_snakemakes_dag(toy):
    """A Snakemake process that imports the toy module plans the toy job: its rule exists (the loop
    in workflow/rules/jobs.smk) and takes its inputs from the job graph."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(toy), str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}

    def snakemake(*args):
        script = textwrap.dedent(f"""
            import sys
            import toy_shape  # noqa: F401
            from snakemake.cli import main
            sys.argv = ["snakemake", *{list(args)!r}]
            main()
        """)
        proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc.stdout + proc.stderr

    # the rule, with the shape's doc
    assert "toy (a toy job: the number of strategies in the closed population)" in snakemake("--list-rules")
    out = snakemake("-n", "-c1", "--forceall", "results/digits/toy.json")
    assert re.search(r"^toy +1$", out, re.M)  # the job stats (a dry run prints `rule` for local rules too)
    block = out[out.index("rule toy:"):]
    assert "input: results/digits/do/closing/population.json" in block
    assert "output: results/digits/toy.json" in block
    # its upstream jobs are planned with it; the other experiment's and the report are not
    assert "rule close:" in out and "rule report:" not in out and "digits-gan" not in out


def test_every_game_implements_the_methods_the_table_dispatches_to():
    methods = {s.runs.removeprefix("Game.") for s in jobtable.SHAPES.values() if s.runs.startswith("Game.")}
    assert methods == {"train", "init", "best_response", "payoff", "close", "evaluate", "metrics", "report"}
    # those the base class leaves to the games (close is the base's, around each game's closing_job)
    abstract = {m for m in methods if "NotImplementedError" in inspect.getsource(getattr(Game, m))}
    assert abstract >= {"train", "best_response", "evaluate", "report"}
    for name in ("at", "gan"):
        game = type(GAMES.get(name))
        for m in abstract:
            assert getattr(game, m) is not getattr(Game, m), f"the {name} game lacks {m}"


def test_a_shape_passing_an_option_its_command_lacks_is_refused():
    bad = jobtable.JobShape("bad", ("metrics",), (("--nope", "{input.x}"),), (("x", "results/{exp}/x.json"),),
                            lambda w: (), lambda ctx: [], None, (), "Game.metrics", 8)
    with pytest.raises(ValueError, match="--nope"):
        jobtable.register(bad)
    assert "bad" not in jobtable.SHAPES
    with pytest.raises(ValueError, match="already in the table"):
        jobtable.register(jobtable.SHAPES["report"])


def test_records_a_job_declares_are_not_work_it_builds_on():
    """A matched baseline declares the DO run's records (``reads_upstream``: it reads their budget),
    yet its compute is its own job's: the model's lineage does not follow them; the metrics job
    declares every record upstream of its evaluations, data preparation's excepted."""
    from doracle.config import load
    from doracle.games import graph
    from doracle.paths import PATTERNS

    p = load("params.yaml")
    jobs = {j["name"]: j for j in graph.jobs(p)}
    matched = jobs["train_baseline_pgd_at_passes"]
    records = {v for k, v in matched["inputs"].items() if k.startswith(graph.UPSTREAM)}
    assert "results/digits/do/it001/defender.json" in records and "results/digits/base/model.json" in records
    assert not {v for k, v in jobs["train_baseline_erm"]["inputs"].items() if k.startswith(graph.UPSTREAM)}
    path = PATTERNS["baseline"].format(exp="digits", method="pgd_at_passes")
    assert [j["rule"] for j in graph.lineage(p, path)] == ["prepare_data", "train_baseline"]
    metrics = {v for k, v in jobs["metrics"]["inputs"].items() if k.startswith(graph.UPSTREAM)}
    assert records < metrics and not any("/data/" in r for r in metrics)
    assert all(r.endswith(".json") for r in metrics)
