# Sweeps (docs/sweeps.md): `snakemake -c2 results/sweeps/<study>/report` runs the Optuna study of
# sweeps/<study>.yaml (`doracle sweep`). Never part of `all`. Each trial is a Snakemake run of its own
# experiment (results/<experiment>-<study>-tNNNN/), started by the sweep with --nolock: its outputs
# are disjoint from this run's and from every other trial's.

# the driver is light (its trials' jobs are the heavy ones, submitted by their own runs)
workflow.localrules("sweep")


rule sweep:
    input:
        "sweeps/{study}.yaml",
    output:
        directory("results/sweeps/{study}/report"),
    log:
        "logs/sweeps/{study}.log",
    benchmark:
        "benchmarks/sweeps/{study}.tsv"
    wildcard_constraints:
        study=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    # every core of the run (a SLURM profile run gives none: then one, read when the job is planned)
    threads: lambda wildcards: workflow.resource_settings.cores or 1
    shell:
        "doracle sweep {input} --study {wildcards.study} --cores {threads} > {log} 2>&1"
