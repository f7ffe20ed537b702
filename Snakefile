# doracle: double-oracle games (adversarial training, GANs), end to end.
#
#   snakemake -c2                          # the default experiments: params.yaml (AT) and params-gan.yaml (GAN)
#   snakemake -c2 --configfile my.yaml     # one other params file, alone (a partial one completes from params.yaml)
#   snakemake -c2 --config seed=1 'do={iterations: 3}'   # overrides, on every experiment of the run
#   snakemake --profile profiles/slurm     # on a SLURM cluster (docs/slurm.md)
#   snakemake -c2 results/sweeps/example/report   # an Optuna sweep over the pipeline (docs/sweeps.md)
#
# data -> models outside the loop -> DO iterations (best responses, payoff, LP solve, prune) -> evaluate -> report
# Every rule calls one `doracle` subcommand, which dispatches to the experiment's game (params `game`).
# Each job shape (command, outputs, params, resources, code) is declared once, in doracle.jobtable;
# workflow/rules/jobs.smk makes a rule of each, doracle.pipeline gives each job its inputs and
# generates dvc.yaml (the same jobs).

import re
import sys

from doracle import pipeline as pl
from doracle.errors import DoracleError, printable, say_error

# No `configfile:` here: each experiment's params (partial files and --config overrides resolved) are
# validated and written to results/<experiment>/params.yaml, which its jobs read (pl.workflow_experiments).
# A bad params file or override stops the run as every doracle command does: exit 2, one message
# naming the key, no stack (Snakemake would print its own for an exception from the Snakefile).
try:
    WF = pl.Workflow(pl.workflow_experiments(workflow.overwrite_configfiles, workflow.config_settings.config,
                                             dry_run=workflow.output_settings.dryrun,
                                             say=lambda line: print(printable(line), file=sys.stderr)))
except DoracleError as exc:
    say_error(exc)
    sys.exit(2)
P = pl.PATTERNS

# `snakemake --report report.html`: each experiment's plots, methods table and index.html (the rule
# report marks them; captions in workflow/report/)
report: "workflow/report/workflow.rst"

# Light jobs run on the submitting host, never as cluster jobs (the job table's resources: None); the others
# ask for their experiment's `resources` (used by profiles/slurm; a local run uses only `threads`).
workflow.localrules("all", *pl.jobtable.local_rules())

wildcard_constraints:
    exp="|".join(map(re.escape, WF.experiments)),
    it=r"(?!000)\d{3}",  # iteration 000 is do_init's
    role=WF.constraint("role"),
    method=WF.constraint("method"),
    player=WF.constraint("player"),
    target=WF.constraint("target"),


rule all:
    default_target: True
    input:
        WF.targets(),


include: "workflow/rules/jobs.smk"
include: "workflow/rules/sweep.smk"


onerror:
    pl.release_claims(WF.experiments.values())  # the params claims of this run (pipeline.claim_params)


onsuccess:
    pl.release_claims(WF.experiments.values())
    for exp, (params, _) in WF.experiments.items():
        print(f"doracle: {exp}: report at {pl.summary_path(params)}, in a browser {pl.html_path(params)} "
              f"(metrics: {P['metrics'].format(exp=exp)}, headline: {P['headline'].format(exp=exp)})")
