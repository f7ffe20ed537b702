# Classifiers outside the DO loop: the base model (DO's first defender) and one baseline per method.

rule train_base:
    input:
        data=P["data"],
    output:
        model=P["base"],
        model_meta=pl.sidecar(P["base"]),
    log:
        pl.log_path(P["base"]),
    benchmark:
        pl.bench_path(P["base"])
    priority: 10
    threads: pl.rule_threads(PARAMS, "train_base")
    resources:
        **pl.rule_resources(PARAMS, "train_base"),
    params:
        file=PARAMS_FILE,
        tracked=pl.tracked(PARAMS, "train_base"),
    shell:
        pl.COMMANDS["train_base"]


rule train_baseline:
    input:
        data=P["data"],
    output:
        model=P["baseline"],
        model_meta=pl.sidecar(P["baseline"]),
    log:
        pl.log_path(P["baseline"]),
    benchmark:
        pl.bench_path(P["baseline"])
    threads: pl.rule_threads(PARAMS, "train_baseline")
    resources:
        **pl.rule_resources(PARAMS, "train_baseline"),
    params:
        file=PARAMS_FILE,
        tracked=pl.tracked(PARAMS, "train_baseline"),
    shell:
        pl.COMMANDS["train_baseline"]
