# The double-oracle chain. Iteration 000 is the base model and the attack against it; iteration
# t >= 1 reads population.json of t-1. After convergence later iterations pass the state through,
# so the DAG is the same for every run. The chain is the critical path: its jobs go first
# (priority), baselines fill the free cores.


def previous(name):
    return lambda w: P[name].format(exp=w.exp, it=pl.it3(int(w.it) - 1))


rule do_init:
    input:
        data=P["data"],
        base=P["base"],
    output:
        population=P["population"].replace("{it}", "000"),
        attacker=P["init_attacker"],
        attacker_meta=pl.sidecar(P["init_attacker"]),
    log:
        pl.log_path(P["population"].replace("{it}", "000")),
    benchmark:
        pl.bench_path(P["population"].replace("{it}", "000"))
    priority: 10
    threads: pl.rule_threads(PARAMS, "do_init")
    resources:
        **pl.rule_resources(PARAMS, "do_init"),
    params:
        file=PARAMS_FILE,
        tracked=pl.tracked(PARAMS, "do_init"),
    shell:
        pl.COMMANDS["do_init"]


rule best_response_defender:
    input:
        data=P["data"],
        state=previous("population"),
    output:
        model=P["defender"],
        model_meta=pl.sidecar(P["defender"]),
    log:
        pl.log_path(P["defender"]),
    benchmark:
        pl.bench_path(P["defender"])
    priority: 10
    threads: pl.rule_threads(PARAMS, "best_response_defender")
    resources:
        **pl.rule_resources(PARAMS, "best_response_defender"),
    params:
        file=PARAMS_FILE,
        tracked=pl.tracked(PARAMS, "best_response_defender"),
    shell:
        pl.COMMANDS["best_response_defender"]


rule best_response_attacker:
    input:
        data=P["data"],
        state=previous("population"),
    output:
        model=P["attacker"],
        model_meta=pl.sidecar(P["attacker"]),
    log:
        pl.log_path(P["attacker"]),
    benchmark:
        pl.bench_path(P["attacker"])
    priority: 10
    threads: pl.rule_threads(PARAMS, "best_response_attacker")
    resources:
        **pl.rule_resources(PARAMS, "best_response_attacker"),
    params:
        file=PARAMS_FILE,
        tracked=pl.tracked(PARAMS, "best_response_attacker"),
    shell:
        pl.COMMANDS["best_response_attacker"]


rule payoff:
    input:
        data=P["data"],
        state=previous("population"),
        defender=P["defender"],
        attacker=P["attacker"],
    output:
        payoff=P["payoff"],
    log:
        pl.log_path(P["payoff"]),
    benchmark:
        pl.bench_path(P["payoff"])
    priority: 10
    threads: pl.rule_threads(PARAMS, "payoff")
    resources:
        **pl.rule_resources(PARAMS, "payoff"),
    params:
        file=PARAMS_FILE,
        tracked=pl.tracked(PARAMS, "payoff"),
    shell:
        pl.COMMANDS["payoff"]


rule solve:
    input:
        state=previous("population"),
        payoff=P["payoff"],
    output:
        meta=P["meta"],
    log:
        pl.log_path(P["meta"]),
    benchmark:
        pl.bench_path(P["meta"])
    priority: 10
    threads: pl.rule_threads(PARAMS, "solve")
    resources:
        **pl.rule_resources(PARAMS, "solve"),
    params:
        file=PARAMS_FILE,
        tracked=pl.tracked(PARAMS, "solve"),
    shell:
        pl.COMMANDS["solve"]


rule prune:
    input:
        state=previous("population"),
        payoff=P["payoff"],
        meta=P["meta"],
    output:
        population=P["population"],
    log:
        pl.log_path(P["population"]),
    benchmark:
        pl.bench_path(P["population"])
    priority: 10
    threads: pl.rule_threads(PARAMS, "prune")
    resources:
        **pl.rule_resources(PARAMS, "prune"),
    params:
        file=PARAMS_FILE,
        tracked=pl.tracked(PARAMS, "prune"),
    shell:
        pl.COMMANDS["prune"]
