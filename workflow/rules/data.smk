# Data: the deterministic train / payoff / test split (digits offline; MNIST, CIFAR-10, SVHN, TinyImageNet downloaded).

rule prepare_data:
    output:
        data=P["data"],
        data_meta=pl.sidecar(P["data"]),
    log:
        pl.log_path(P["data"]),
    benchmark:
        pl.bench_path(P["data"])
    threads: pl.rule_threads(PARAMS, "prepare_data")
    resources:
        **pl.rule_resources(PARAMS, "prepare_data"),
    params:
        file=PARAMS_FILE,
        tracked=pl.tracked(PARAMS, "prepare_data"),
    shell:
        pl.COMMANDS["prepare_data"]
