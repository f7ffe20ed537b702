"""The GAN game (``game: gan``; DO-GAN, Aung et al., CVPR 2022) as the pipeline sees it: players,
job graph, the params each stage reads, one method per job shape, and the metrics job.

Torch-free, so the light jobs and params checks start without torch: the network jobs' methods
import :mod:`doracle.games.gan.jobs` (training, payoff, evaluation) when they run. The game itself is
described there.
"""

from __future__ import annotations

import math
from pathlib import Path

from doracle import artifacts, models
from doracle.artifacts import read_json, write_json
from doracle.config import Params
from doracle.errors import ArtifactError, ConfigError
from doracle.evaluation.intervals import paired_difference
from doracle.games import GAMES, Game
from doracle.games.graph import model_cost, stage_params
from doracle.games.population import double_oracle_summary, read_population


def _jobs():
    """The network jobs (imports torch: only the jobs that run networks pay for it)."""
    # torch: the network jobs' module; params checks and light jobs never load it
    from doracle.games.gan import jobs as gan

    return gan


def player_epochs(params: Params) -> dict:
    """The DO run's planned budget in player-epochs, and the base GAN's epochs that match it: a
    warm-up or co-trained pair epoch trains both players (2), a frozen-oracle best-response epoch one
    (1); the closing discriminator's epochs count too."""
    g = params.gan
    per_iteration = 2 * g.pair_epochs if g.oracle == "cotrained" else g.generator_epochs + g.discriminator_epochs
    do = 2 * g.warmup_epochs + params.do.iterations * per_iteration + g.discriminator_epochs
    return {"do_player_epochs": do, "base_gan_epochs": math.ceil(do / 2), "base_gan_player_epochs": 2 * math.ceil(do / 2)}


def merge_metrics(params: Params, population: str, evaluations: list[str], out: str) -> dict:
    """metrics.json of a GAN experiment: every scored generator (``base_gan``, ``do_mixture``, each
    final generator), the reference classifier, and the double-oracle summary."""

    state, doc = read_population(population)
    models_, refs, floors, data, replicates = {}, [], [], None, {}
    for path in evaluations:
        e = read_json(path)
        if e.get("kind") != "evaluation" or e.get("game") != "gan":
            raise ArtifactError(f"{path}: not a GAN evaluation file")
        refs.append(e["reference"])
        floors.append(e["fid_real_vs_real"])
        data = e["data"]
        for name, r in e["models"].items():
            # every job upstream of the model: the base GAN's job, the whole DO run for the mixture,
            # the jobs that led to a single generator's file for that generator
            # the grids (read by the report) and the bootstrap replicates (the comparisons below) stay out
            models_[name] = {**{k: v for k, v in r.items() if k not in ("grid", "fid_bootstrap", "bootstrap_replicates")},
                             "inception_score": r["is_mean"], "compute": model_cost(params, r["produced_by"])}
            replicates[name] = r.get("fid_bootstrap") or []
    if any(r["sha256"] != refs[0]["sha256"] for r in refs):
        raise ArtifactError("the evaluations used different reference classifiers")
    budget = player_epochs(params)
    if "base_gan_passes" in models_:  # its epochs came from the DO run's counted passes: its sidecar says
        side = read_json(artifacts.sidecar(models_["base_gan_passes"]["checkpoint"]))["budget"]
        budget["base_gan_passes"] = {"epochs": side["base_gan_passes_epochs"], "do_passes": side["do_passes"],
                                     "passes_per_epoch": side["passes_per_epoch"]}
    comparisons = fid_comparisons(models_, replicates)
    for other in GAN.baselines(params)[1:]:  # the DO mixture against every other baseline too
        comparisons.update({k: c for k, c in fid_comparisons(models_, replicates, other).items()
                            if k.startswith("do_mixture - ")})
    metrics = {
        "kind": "metrics", "game": "gan", "experiment": params.experiment, "seed": params.seed,
        "params": stage_params(params, "metrics"), "reference": refs[0] if refs else None,
        "fid_real_vs_real": floors[0] if floors else None, "budget": budget, "data_path": data,
        "models": models_, "comparisons": comparisons,
        "double_oracle": double_oracle_summary(state, params.do.tolerance, doc["payoff_stderr"], params.seed),
        "inputs": artifacts.inputs_record([population, *evaluations]),
    }
    write_json(out, metrics)
    return metrics


def fid_comparisons(models_: dict, replicates: dict, reference: str = "base_gan") -> dict:
    """Each model's FID minus the ``reference`` model's, with its paired bootstrap interval (the
    evaluation jobs resampled the same real images and latents: :mod:`doracle.evaluation.intervals`).
    Empty without the reference model or without replicates."""

    if reference not in models_ or not replicates.get(reference):
        return {}
    ref = models_[reference]
    return {f"{name} - {reference}": {"metric": "fid", **paired_difference(
                r["fid"], replicates[name], ref["fid"], replicates[reference])}
            for name, r in models_.items() if name != reference and len(replicates.get(name, [])) ==
            len(replicates[reference])}


class GanGame(Game):
    """Discriminator (row, maximises V) against generator (column, minimises V)."""

    name = "gan"
    players = ("discriminator", "generator")
    id_prefixes = ("d", "g")
    deployed = "generator"
    TARGETS = ("do_mixture", "do_members")
    _NETS = ("gan.generator", "gan.discriminator", "gan.latent_dim", "gan.spectral_norm", "gan.batch_size",
             "gan.betas")
    _BUDGET = ("gan.oracle", "gan.warmup_epochs", "gan.pair_epochs", "gan.generator_epochs",
               "gan.discriminator_epochs", "do.iterations")
    dag_params = ("gan.oracle",)
    # each stage tracks only what it reads: editing the metrics settings retrains nothing
    stage_params = {
        "train": ("seed", "device", "threads"),
        "reference": ("training", "gan.reference"),
        # base_gan_passes reads the DO run's counted passes from its files, so every DO param reaches it
        "baseline": (*_NETS, "gan.lr_generator", "gan.warmup_lr_discriminator", "gan.n_critic", *_BUDGET),
        "init": ("seed", "device", "threads", *_NETS, "gan.lr_generator", "gan.warmup_epochs",
                 "gan.warmup_lr_discriminator", "gan.n_critic", "gan.payoff_latents"),
        "best_response_pair": ("seed", "device", "threads", *_NETS, "gan.lr_generator", "gan.lr_discriminator",
                               "gan.pair_epochs", "gan.n_critic", "gan.opponent_weight", "gan.warm_start"),
        "best_response_discriminator": ("seed", "device", "threads", *_NETS, "gan.lr_discriminator",
                                        "gan.discriminator_epochs", "gan.warm_start"),
        "best_response_generator": ("seed", "device", "threads", *_NETS, "gan.lr_generator", "gan.generator_epochs",
                                    "gan.warm_start"),
        "payoff": ("seed", "device", "threads", "gan.latent_dim", "gan.payoff_latents"),
        # the closing discriminator (the frozen oracle's), its payoff cells and the last solve
        "closing": ("seed", "device", "threads", *_NETS, "gan.lr_discriminator", "gan.discriminator_epochs",
                    "gan.warm_start", "gan.payoff_latents", "do.meta_solver"),
        "evaluate": ("seed", "device", "threads", "gan.metrics"),
        "metrics": ("seed", *_BUDGET, "do.tolerance"),
        "report": ("experiment", "game"),
    }

    def budget(self, params) -> dict:
        """The DO run's planned player-epochs and the base GAN's matching epochs (:func:`player_epochs`)."""
        return player_epochs(params)

    def train_roles(self, params):
        return ("reference",)

    def eval_roles(self, params):
        return ("reference",)

    def baselines(self, params):
        return ("base_gan", "base_gan_passes")

    def baseline_uses(self, params, method):
        if method == "base_gan_passes":  # its epochs come from the DO run's counted passes
            from doracle.paths import PATTERNS

            return {"population": PATTERNS["closed"].format(exp=params.experiment)}
        return {}

    def targets(self, params):
        return self.TARGETS

    def responders(self, params):
        if params.gan.oracle == "cotrained":
            return {self.PAIR: self.players}
        return super().responders(params)

    def check_names(self, params):
        models.check_gan_arch(params.gan.generator, "generator")
        models.check_gan_arch(params.gan.discriminator, "discriminator")
        models.check_arch(params.gan.reference.arch)

    def train(self, params, role, method, data, out, uses=None):
        if role == "reference":
            meta = _jobs().train_reference(params, data, out)
            return f"reference classifier: train accuracy {meta['training']['train_accuracy']:.4f}"
        if method not in self.baselines(params):
            raise ConfigError(f"--method {method!r}: the GAN game's baselines are {', '.join(self.baselines(params))}")
        if method == "base_gan_passes":
            if not (uses or {}).get("population"):
                raise ConfigError("--method base_gan_passes needs --uses population=PATH (the closed DO population, "
                                  "whose jobs' counted passes it matches)")
            meta = _jobs().train_base_gan(params, data, out, population=uses["population"])
        else:
            meta = _jobs().train_base_gan(params, data, out)
        return (f"{method}: {meta['training']['epochs']} epochs, {meta['training']['train_seconds']:.1f} s")

    def init(self, params, data, uses, init_out, out):
        doc = _jobs().init(params, data, init_out, out)
        return f"iteration 0: V(g000, d000) = {doc['state']['value']:.4f}"

    def best_response(self, params, player, data, state, iteration, out):
        meta = _jobs().best_response(params, player, data, state, iteration, out)
        return "skipped (converged)" if meta.get("skipped") else f"wrote {out}"

    def payoff(self, params, data, state, iteration, row, col, out):
        return _jobs().payoff(params, data, state, iteration, row, col, out)

    def closing_job(self, params, data, state, model_out, out):
        return _jobs().close(params, data, state, model_out, out)

    def evaluate(self, params, data, label, out, *, population, checkpoint, state_path, uses):
        if "reference" not in uses:
            raise ConfigError("GAN evaluation needs --uses reference=PATH (the reference classifier)")
        r = _jobs().evaluate(params, data, label, out, population=population, checkpoint=checkpoint,
                     reference=uses["reference"])
        return "\n".join(f"{name}: FID {m['fid']:.3f}, IS {m['is_mean']:.3f}, classes {m['classes_covered']}"
                         for name, m in r["models"].items())

    def metrics(self, params, population, evaluations, out):
        m = merge_metrics(params, population, evaluations, out)
        return "\n".join(f"{name:>12}: FID {r['fid']:.3f}  IS {r['inception_score']:.3f}  classes "
                         f"{r['classes_covered']}" for name, r in m["models"].items())

    def report(self, params, metrics, population, payoff, out) -> Path:
        # matplotlib: the report job's module
        from doracle.report.gan import write_report

        return write_report(params, metrics, population, payoff, out)

    def headline_metrics(self, metrics):
        out = {}
        for name, r in metrics["models"].items():
            out[f"{name}_fid"] = r["fid"]
            out[f"{name}_inception_score"] = r["inception_score"]
            out[f"{name}_classes_covered"] = r["classes_covered"]
        for key, c in metrics.get("comparisons", {}).items():
            if key.startswith("do_mixture - ") and c["interval"] is not None:
                other = key.removeprefix("do_mixture - ")
                out[f"do_mixture_fid_minus_{other}"] = c["difference"]
                out[f"do_mixture_fid_minus_{other}_low"], out[f"do_mixture_fid_minus_{other}_high"] = c["interval"]
        return {**out, "fid_real_vs_real": metrics["fid_real_vs_real"], **super().headline_metrics(metrics)}

    def dvc_plots(self, params, report):
        exp = params.experiment
        return [{f"{exp}: FID": {"x": "fid", "y": {f"{report}/plots/scores.json": "model"},
                                 "template": "bar_horizontal", "title": f"{exp}: FID per model (lower is better)"}},
                *({f"{report}/samples_{name}.png": {}} for name in ("do_mixture", *self.baselines(params), "real")),
                {f"{report}/scores.png": {}},
                *super().dvc_plots(params, report)]


GAN = GAMES.register("gan")(GanGame())
