# doracle: double-oracle adversarial training, end to end.
#
#   snakemake -c2                          # the default experiment of params.yaml
#   snakemake -c2 --configfile my.yaml     # another complete params file
#   snakemake --profile profiles/slurm     # on a SLURM cluster (README: SLURM)
#
# data -> base model -> DO iterations (best responses, payoff, LP solve, prune) -> evaluate -> report
# Every rule calls one `doracle` subcommand; paths and commands live in doracle.pipeline, which also
# generates dvc.yaml (same jobs). Rules are in workflow/rules/.

from doracle import pipeline as pl

configfile: "params.yaml"

PARAMS, PARAMS_FILE = pl.workflow_params(config, workflow.overwrite_configfiles)
EXP = PARAMS.experiment
LAST = pl.it3(PARAMS.do.iterations)
P = pl.PATTERNS

# Light jobs run on the submitting host, never as cluster jobs (pipeline.RULE_RESOURCES); the others
# ask for params.yaml's `resources` (used by profiles/slurm; a local run uses only `threads`).
workflow.localrules("all", *pl.LOCAL_RULES)

wildcard_constraints:
    exp=EXP,
    it=r"\d{3}",
    method="|".join(PARAMS.baselines.methods),


rule all:
    default_target: True
    input:
        pl.final_targets(PARAMS),


include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/double_oracle.smk"
include: "workflow/rules/evaluate.smk"


onsuccess:
    print(f"\ndoracle: report at {P['report'].format(exp=EXP)} (metrics: {P['metrics'].format(exp=EXP)})")
