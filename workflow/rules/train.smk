# Models trained once, outside the DO loop: the game's own (AT: `base`, DO's first defender; GAN:
# `reference`, the classifier that scores generated images) and one baseline per method.

rule train:
    input:
        unpack(WF.inputs("train")),
    output:
        model=P["model"],
        model_meta=pl.sidecar(P["model"]),
    log:
        pl.log_path(P["model"]),
    benchmark:
        pl.bench_path(P["model"])
    priority: 10
    threads: WF.threads("train")
    resources:
        **WF.resources("train"),
    params:
        **WF.params("train"),
    shell:
        pl.COMMANDS["train"]


rule train_baseline:
    input:
        unpack(WF.inputs("train_baseline")),
    output:
        model=P["baseline"],
        model_meta=pl.sidecar(P["baseline"]),
    log:
        pl.log_path(P["baseline"]),
    benchmark:
        pl.bench_path(P["baseline"])
    threads: WF.threads("train_baseline")
    resources:
        **WF.resources("train_baseline"),
    params:
        **WF.params("train_baseline"),
    shell:
        pl.COMMANDS["train_baseline"]
