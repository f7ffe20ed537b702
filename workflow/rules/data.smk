# Data: the deterministic train / payoff / test split (digits offline; MNIST, CIFAR-10, SVHN, TinyImageNet downloaded).

rule prepare_data:
    output:
        data=P["data"],
        data_meta=pl.sidecar(P["data"]),
    log:
        pl.log_path(P["data"]),
    benchmark:
        pl.bench_path(P["data"])
    threads: WF.threads("prepare_data")
    resources:
        **WF.resources("prepare_data"),
    params:
        **WF.params("prepare_data"),
    shell:
        pl.COMMANDS["prepare_data"]
