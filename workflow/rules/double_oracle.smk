# The double-oracle chain, the same for every game. Iteration 000 (do_init) starts both
# populations; iteration t >= 1 reads population.json of t-1: a best response per player
# ({player}: AT defender / attacker, GAN discriminator / generator, or a GAN pair trained
# together: gan.oracle cotrained), the new payoff row and
# column, the meta-solve, pruning. After convergence later iterations pass the state through, so
# the DAG is the same for every run. After the last iteration the closing step (rule close) answers
# the deployed player's final meta-strategy with one more best response, adds its row or column and
# solves once more: evaluation reads that closed population. The chain is the critical path: its
# jobs go first (priority), baselines fill the free cores.


rule do_init:
    input:
        unpack(WF.inputs("do_init")),
    output:
        population=P["population"].replace("{it}", "000"),
        init=P["init"],
        init_meta=pl.sidecar(P["init"]),
    log:
        pl.log_path(P["population"].replace("{it}", "000")),
    benchmark:
        pl.bench_path(P["population"].replace("{it}", "000"))
    priority: 10
    threads: WF.threads("do_init")
    resources:
        **WF.resources("do_init"),
    params:
        **WF.params("do_init"),
    shell:
        pl.COMMANDS["do_init"]


rule best_response:
    input:
        unpack(WF.inputs("best_response")),
    output:
        model=P["strategy"],
        model_meta=pl.sidecar(P["strategy"]),
    log:
        pl.log_path(P["strategy"]),
    benchmark:
        pl.bench_path(P["strategy"])
    priority: 10
    threads: WF.threads("best_response")
    resources:
        **WF.resources("best_response"),
    params:
        **WF.params("best_response"),
    shell:
        pl.COMMANDS["best_response"]


rule payoff:
    input:
        unpack(WF.inputs("payoff")),
    output:
        payoff=P["payoff"],
    log:
        pl.log_path(P["payoff"]),
    benchmark:
        pl.bench_path(P["payoff"])
    priority: 10
    threads: WF.threads("payoff")
    resources:
        **WF.resources("payoff"),
    params:
        **WF.params("payoff"),
    shell:
        pl.COMMANDS["payoff"]


rule solve:
    input:
        unpack(WF.inputs("solve")),
    output:
        meta=P["meta"],
    log:
        pl.log_path(P["meta"]),
    benchmark:
        pl.bench_path(P["meta"])
    priority: 10
    threads: WF.threads("solve")
    resources:
        **WF.resources("solve"),
    params:
        **WF.params("solve"),
    shell:
        pl.COMMANDS["solve"]


rule prune:
    input:
        unpack(WF.inputs("prune")),
    output:
        population=P["population"],
    log:
        pl.log_path(P["population"]),
    benchmark:
        pl.bench_path(P["population"])
    priority: 10
    threads: WF.threads("prune")
    resources:
        **WF.resources("prune"),
    params:
        **WF.params("prune"),
    shell:
        pl.COMMANDS["prune"]


rule close:
    input:
        unpack(WF.inputs("close")),
    output:
        population=P["closed"],
        model=P["closing_model"],
        model_meta=pl.sidecar(P["closing_model"]),
    log:
        pl.log_path(P["closed"]),
    benchmark:
        pl.bench_path(P["closed"])
    priority: 10
    threads: WF.threads("close")
    resources:
        **WF.resources("close"),
    params:
        **WF.params("close"),
    shell:
        pl.COMMANDS["close"]
