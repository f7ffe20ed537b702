# Every pipeline job, one rule per job shape of doracle.jobtable (the table dvc.yaml, the doracle
# subcommands, the cluster resources and the code digests are read from too), made in a loop with
# Snakemake's `name:` directive: adding a job shape to the table adds its rule. `snakemake
# --list-rules` lists them; each shape's `doc` in the table says what its jobs do.
#
# data -> train (models outside the loop) and train_baseline -> do_init (iteration 000) ->
# per iteration t >= 1, reading population.json of t-1: best_response (per player, or a GAN pair),
# payoff, solve, prune -> close (the closing best response) -> evaluate_do and evaluate_baseline ->
# metrics -> report. The chain is the critical path: its jobs go first (priority), the mixture
# evaluations next, baselines fill the free cores.

for shape in pl.jobtable.SHAPES.values():
    _outputs = WF.outputs(shape.rule)
    if shape.report_folder:  # the report folder, marked for `snakemake --report` (captions in workflow/report/)
        _outputs = {k: report(directory(v), patterns=["{name}.png", "{name}.csv", "{name}.html"],
                              caption="../report/report.rst", category="{exp}", subcategory="report",
                              labels={"experiment": "{exp}", "item": "{name}"}) for k, v in _outputs.items()}

    rule:
        name: shape.rule
        input:
            unpack(WF.inputs(shape.rule)),
        output:
            **_outputs,
        log:
            WF.log(shape.rule),
        benchmark:
            WF.benchmark(shape.rule)
        priority: shape.priority
        threads: WF.threads(shape.rule)
        resources:
            **WF.resources(shape.rule),
        params:
            **WF.params(shape.rule),
        # `rule` is the job's rule name where Snakemake runs the command (the rule's function, called
        # after this loop has ended: `shape` would be the table's last); here, its definition, it is not set
        shell:
            WF.shell(locals().get("rule", shape.rule))
    workflow.get_rule(shape.rule).docstring = shape.doc  # shown by `snakemake --list-rules`
