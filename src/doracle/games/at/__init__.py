"""The adversarial-training game (params ``game: at``), in one place: the game as the pipeline sees
it (:mod:`.game`, torch-free: players, stage params, job graph answers, one method per job shape),
its network jobs and strategy I/O (:mod:`.jobs`: base model, init, best responses, payoff, closing
step), the attacker strategies (:mod:`.attackers`), the evaluation job (:mod:`.evaluate`) and the
metrics job (:mod:`.metrics`, torch-free). Its report is :mod:`doracle.report.at` (the report
rule's code only: an edit to it reruns the reports, not the network jobs). Importing this package
imports nothing: the light jobs load only :mod:`.game`."""
