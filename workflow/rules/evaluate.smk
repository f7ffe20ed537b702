# Honest evaluation: one job per model (the DO mixture, its best member, the uniform mixture over
# the final population, every baseline), merged into metrics.json; then the report.

FINAL = P["population"].replace("{it}", LAST)


rule evaluate_do:
    input:
        data=P["data"],
        population=FINAL,
    output:
        evaluation=P["evaluation_do"],
    log:
        pl.log_path(P["evaluation_do"]),
    benchmark:
        pl.bench_path(P["evaluation_do"])
    wildcard_constraints:
        target="|".join(pl.DO_TARGETS),
    # after the chain these are the critical path; the largest mixture first
    priority: lambda w: {"do_uniform": 9, "do_mixture": 8}.get(w.target, 7)
    threads: pl.rule_threads(PARAMS, "evaluate_do")
    resources:
        **pl.rule_resources(PARAMS, "evaluate_do"),
    params:
        file=PARAMS_FILE,
        tracked=pl.tracked(PARAMS, "evaluate_do"),
        state=lambda w, output: pl.state_path(output.evaluation),
    shell:
        pl.COMMANDS["evaluate_do"]


rule evaluate_baseline:
    input:
        data=P["data"],
        model=P["baseline"],
    output:
        evaluation=P["evaluation_baseline"],
    log:
        pl.log_path(P["evaluation_baseline"]),
    benchmark:
        pl.bench_path(P["evaluation_baseline"])
    threads: pl.rule_threads(PARAMS, "evaluate_baseline")
    resources:
        **pl.rule_resources(PARAMS, "evaluate_baseline"),
    params:
        file=PARAMS_FILE,
        tracked=pl.tracked(PARAMS, "evaluate_baseline"),
        state=lambda w, output: pl.state_path(output.evaluation),
    shell:
        pl.COMMANDS["evaluate_baseline"]


rule metrics:
    input:
        population=FINAL,
        evaluations=pl.evaluation_files(PARAMS),
    output:
        metrics=P["metrics"],
    log:
        pl.log_path(P["metrics"]),
    benchmark:
        pl.bench_path(P["metrics"])
    threads: pl.rule_threads(PARAMS, "metrics")
    resources:
        **pl.rule_resources(PARAMS, "metrics"),
    params:
        file=PARAMS_FILE,
        tracked=pl.tracked(PARAMS, "metrics"),
        evaluations=" ".join(pl.evaluation_files(PARAMS)),
    shell:
        pl.COMMANDS["metrics"]


rule report:
    input:
        metrics=P["metrics"],
        population=FINAL,
        payoff=P["payoff"].replace("{it}", LAST),
    output:
        report=P["report"],
        **pl.report_plots(P["report"]),
    log:
        pl.log_path(P["report"]),
    benchmark:
        pl.bench_path(P["report"])
    threads: pl.rule_threads(PARAMS, "report")
    resources:
        **pl.rule_resources(PARAMS, "report"),
    params:
        file=PARAMS_FILE,
        tracked=pl.tracked(PARAMS, "report"),
    shell:
        pl.COMMANDS["report"]
