# Evaluation: one job per DO target (AT: the DO mixture, its best member, the uniform mixture; GAN:
# the generator mixture, the final generators) and per baseline, merged into metrics.json; then
# the report (a folder: index.html, summary.md, methods.csv and the game's plots), marked for
# `snakemake --report`: its plots, the methods table and index.html, captioned by workflow/report/.


rule evaluate_do:
    input:
        unpack(WF.inputs("evaluate_do")),
    output:
        evaluation=P["evaluation_do"],
    log:
        pl.log_path(P["evaluation_do"]),
    benchmark:
        pl.bench_path(P["evaluation_do"])
    # after the chain these are the critical path; the largest mixture first
    priority: lambda w: {"do_uniform": 9, "do_mixture": 8}.get(w.target, 7)
    threads: WF.threads("evaluate_do")
    resources:
        **WF.resources("evaluate_do"),
    params:
        **WF.params("evaluate_do"),
    shell:
        pl.COMMANDS["evaluate_do"]


rule evaluate_baseline:
    input:
        unpack(WF.inputs("evaluate_baseline")),
    output:
        evaluation=P["evaluation_baseline"],
    log:
        pl.log_path(P["evaluation_baseline"]),
    benchmark:
        pl.bench_path(P["evaluation_baseline"])
    threads: WF.threads("evaluate_baseline")
    resources:
        **WF.resources("evaluate_baseline"),
    params:
        **WF.params("evaluate_baseline"),
    shell:
        pl.COMMANDS["evaluate_baseline"]


rule metrics:
    input:
        unpack(WF.inputs("metrics")),
    output:
        metrics=P["metrics"],
        headline=P["headline"],
    log:
        pl.log_path(P["metrics"]),
    benchmark:
        pl.bench_path(P["metrics"])
    threads: WF.threads("metrics")
    resources:
        **WF.resources("metrics"),
    params:
        **WF.params("metrics"),
    shell:
        pl.COMMANDS["metrics"]


rule report:
    input:
        unpack(WF.inputs("report")),
    output:
        report=report(
            directory(P["report"]),
            patterns=["{name}.png", "{name}.csv", "{name}.html"],
            caption="../report/report.rst",
            category="{exp}",
            subcategory="report",
            labels={"experiment": "{exp}", "item": "{name}"},
        ),
    log:
        pl.log_path(P["report"]),
    benchmark:
        pl.bench_path(P["report"])
    threads: WF.threads("report")
    resources:
        **WF.resources("report"),
    params:
        **WF.params("report"),
    shell:
        pl.COMMANDS["report"]
