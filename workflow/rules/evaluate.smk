# Honest evaluation of the DO mixture, its best member and every baseline; then the report.

BASELINES = {m: P["baseline"].format(exp=EXP, method=m) for m in PARAMS.baselines.methods}


rule evaluate:
    input:
        data=P["data"],
        population=P["population"].replace("{it}", LAST),
        **{f"baseline_{m}": path for m, path in BASELINES.items()},
    output:
        metrics=P["metrics"],
    log:
        pl.log_path(P["metrics"]),
    benchmark:
        pl.bench_path(P["metrics"])
    params:
        file=PARAMS_FILE,
        tracked=pl.tracked(PARAMS, "evaluate"),
        baselines=pl.baseline_args(PARAMS, BASELINES),
    shell:
        pl.COMMANDS["evaluate"]


rule report:
    input:
        metrics=P["metrics"],
        population=P["population"].replace("{it}", LAST),
        payoff=P["payoff"].replace("{it}", LAST),
    output:
        report=P["report"],
        **pl.report_plots(P["report"]),
    log:
        pl.log_path(P["report"]),
    benchmark:
        pl.bench_path(P["report"])
    params:
        file=PARAMS_FILE,
        tracked=pl.tracked(PARAMS, "report"),
    shell:
        pl.COMMANDS["report"]
