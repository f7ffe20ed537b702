"""The adversarial-training game (``game: at``) as the pipeline sees it: players, job graph, the
params each stage reads, and one method per job shape.

Torch-free, so the light jobs (metrics, report) and params checks start without torch: the
network jobs' methods import :mod:`doracle.games.at.jobs` (training, attackers, payoff) when
they run.
"""

from __future__ import annotations

from doracle import config
from doracle.errors import ConfigError
from doracle.games import GAMES, Game
from doracle.paths import PATTERNS


def _jobs():
    """The network jobs (imports torch: only the jobs that run networks pay for it)."""
    # torch: the network jobs' module; params checks and light jobs never load it
    from doracle.games.at import jobs as adversarial

    return adversarial


class AdversarialTraining(Game):
    """Classifier (defender, maximises accuracy) against perturbation functions (attacker)."""

    name = "at"
    players = ("defender", "attacker")
    id_prefixes = ("d", "a")
    deployed = "defender"
    stage_params = {
        "train": ("seed", "device", "threads", "model", "training", "threat_model", "defenses"),
        "base": ("base",),
        "baseline": ("baselines",),
        "init": ("seed", "device", "threads", "threat_model", "do.attacker"),
        "best_response_defender": ("seed", "device", "threads", "model", "training", "threat_model",
                                   "defenses", "do.defender"),
        "best_response_attacker": ("seed", "device", "threads", "threat_model", "do.attacker"),
        "payoff": ("device", "threads"),
        # the closing attacker (on the payoff split only), its payoff cells and the last solve
        "closing": ("seed", "device", "threads", "threat_model", "do.attacker", "do.meta_solver"),
        "evaluate": ("seed", "device", "threads", "threat_model", "evaluation"),
        "metrics": ("seed", "threat_model", "evaluation", "do.tolerance"),
        "report": ("experiment", "game"),
    }
    dag_params = ("baselines.methods", "baselines.matched", "baselines.matched_defense")
    #: the DO models every AT experiment evaluates (see doracle.games.at.evaluate.do_target)
    TARGETS = ("do_mixture", "do_best_member", "do_uniform")

    def train_roles(self, params):
        return ("base",)

    def warnings(self, params):
        return config.warnings(params)

    def init_roles(self, params):
        return ("base",)

    def baselines(self, params):
        return (*params.baselines.methods, *params.baselines.matched_names())

    def baseline_uses(self, params, method):
        if method in params.baselines.matched_names():  # its budget is the closed DO run's

            return {"population": PATTERNS["closed"].format(exp=params.experiment)}
        return {}

    def targets(self, params):
        return self.TARGETS

    def train(self, params, role, method, data, out, uses=None):
        if role == "base":
            method = method or params.base.defense
        elif role == "baseline":
            if method not in self.baselines(params):
                raise ConfigError(f"--method {method!r} is not a baseline of these params: "
                                  f"{', '.join(self.baselines(params))} (baselines.methods and baselines.matched)")
        else:
            raise ConfigError(f"the AT game trains roles base and baseline, not {role!r}")
        if role == "baseline" and method in params.baselines.matched_names():
            if not (uses or {}).get("population"):
                raise ConfigError(f"--method {method} needs --uses population=PATH (the closed DO population, "
                                  "whose budget it matches)")
            meta = _jobs().train_matched(params, data, out, uses["population"], method)
        else:
            meta = _jobs().train_classifier(params, data, out, role=role, method=method)
        return (f"trained {method}: train accuracy {meta['training']['train_accuracy']:.4f}, "
                f"{meta['training']['train_seconds']:.1f} s")

    def init(self, params, data, uses, init_out, out):
        doc = _jobs().init(params, data, uses["base"], init_out, out)
        return f"iteration 0: payoff {doc['state']['value']:.4f}"

    def best_response(self, params, player, data, state, iteration, out):
        jobs = _jobs()
        fn = {"defender": jobs.best_response_defender, "attacker": jobs.best_response_attacker}[player]
        return "skipped (converged)" if fn(params, data, state, iteration, out).get("skipped") else f"wrote {out}"

    def payoff(self, params, data, state, iteration, row, col, out):
        return _jobs().payoff(params, data, state, iteration, row, col, out)

    def closing_job(self, params, data, state, model_out, out):
        return _jobs().close(params, data, state, model_out, out)

    def evaluate(self, params, data, label, out, *, population, checkpoint, state_path, uses):
        # torch: the evaluation job's module
        from doracle.games.at.evaluate import evaluate

        r = evaluate(params, data, label, out, population=population, checkpoint=checkpoint, state_path=state_path)
        return f"{label}: clean {r['clean_accuracy']:.4f}, worst case {r['robust_accuracy']['worst_case']:.4f}"

    def metrics(self, params, population, evaluations, out):
        from doracle.games.at.metrics import merge_metrics  # the metrics job's module (JSON only)

        m = merge_metrics(params, population, evaluations, out, self.TARGETS)
        return "\n".join(f"{name:>16}: clean {r['clean_accuracy']:.4f}  worst case "
                         f"{r['robust_accuracy']['worst_case']:.4f}" for name, r in m["models"].items())

    def report(self, params, metrics, population, payoff, out):
        # matplotlib: the report job's module
        from doracle.report.at import write_report

        return write_report(params, metrics, population, payoff, out)

    def headline_metrics(self, metrics):
        out = {}
        for name, r in metrics["models"].items():
            out[f"{name}_clean_accuracy"] = r["clean_accuracy"]
            out[f"{name}_worst_case"] = r["robust_accuracy"]["worst_case"]
        return {**out, **super().headline_metrics(metrics)}

    def dvc_plots(self, params, report):
        exp, models = params.experiment, [*self.targets(params), *self.baselines(params)]
        curve = [] if params.evaluation.eps_curve is None else [
            {f"{exp}: robust accuracy vs eps": {"x": "eps", "y": {f"{report}/plots/robustness_curve.json": models},
                                                "title": f"{exp}: accuracy under PGD vs eps",
                                                "x_label": "eps (x 1/255)", "y_label": "robust accuracy"}},
            {f"{report}/robustness_curve.png": {}}]
        return [*curve, *super().dvc_plots(params, report)]


AT = GAMES.register("at")(AdversarialTraining())
