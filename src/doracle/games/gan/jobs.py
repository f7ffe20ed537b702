"""The GAN game (DO-GAN; Aung et al., CVPR 2022), as pipeline jobs on artifacts.

* Discriminator (row player, maximises): ``D`` with ``D(x) = sigmoid(logit)``.
* Generator (column player, minimises): ``G(z)``.
* Best responses (``gan.oracle``; losses in docs/methods.md): ``cotrained`` (the authors'): one job
  trains a new generator and a new discriminator together as a GAN, each also against the other's
  stored mixture weighted by sigma (:func:`~doracle.games.gan.train.train_pair`); ``frozen``: a
  discriminator trained against sigma_G and a generator against sigma_D (non-saturating loss),
  each alone against frozen opponents (exact expectations over the members).
* Closing step (:func:`close`): a discriminator trained against the final sigma_G; its gain is the
  deployed generator mixture's exploitability.
* Payoff ``U[i, j] = V(G_j, D_i) = E log D_i(x) + E log(1 - D_i(G_j(z)))`` on the payoff split and
  ``gan.payoff_latents`` fixed latents, with its standard error (:mod:`doracle.games.gan.arithmetic`).
  Rows are discriminators because the engine's row player maximises.
* Iteration 0 is a warm-up of ordinary GAN training (``gan.warmup_epochs``, the discriminator at
  ``gan.warmup_lr_discriminator``): its generator and discriminator are g000 and d000.
  Best responses start from the player's best current member (``gan.warm_start``; the authors'
  code warm-starts from earlier models) or from fresh weights.
* Deployed generator: each image draws its member from sigma_G (seeded; arithmetic.MixtureSampler).
* Evaluation: FID, an Inception-Score-style score, classes covered and precision / recall /
  density / coverage, in the features of a reference classifier trained on the same data by its
  own job (``train_reference``); Inception FID/IS with ``gan.metrics.inception`` (clusters).
* Baseline ``base_gan``: ordinary GAN training with the same total budget as the whole DO run,
  counted in player-epochs over the training split: a warm-up or pair epoch trains both players
  (2), a frozen best-response epoch one (1), the closing discriminator's epochs count
  (:func:`doracle.games.gan.game.player_epochs`). Both players' measured passes are recorded
  beside it.

GAN artifacts hold networks under their player's prefix (``generator.<param>``,
``discriminator.<param>``) and the sidecar records each network's architecture (``nets``), so
one loader reads the init file (both players), a pair (both), a best response (one) and the
baseline (both).
"""

from __future__ import annotations

import base64
import math
import time

import numpy as np
import torch

from doracle import artifacts, compute, models, runtime
from doracle.artifacts import sha256_file, write_json
from doracle.config import Params
from doracle.data import load as load_dataset
from doracle.defenses.training import accuracy
from doracle.engine import DOState
from doracle.errors import ArtifactError, ConfigError
from doracle.games import GAMES, classifiers, game_of, graph, nas
from doracle.games.gan.arithmetic import fixed_latents, payoff_cell, sample_mixture
from doracle.games.gan.train import (
    GanOptim,
    _spans,
    train_discriminator,
    train_gan,
    train_generator,
    train_pair,
)
from doracle.games.graph import stage_params
from doracle.games.population import (
    _population_doc,
    _strategy,
    best_member,
    checked_ref,
    close_job,
    payoff_job,
    read_population,
    skip_artifact,
    support,
)

ROLES = ("generator", "discriminator")


# ----------------------------------------------------------------------------- networks on disk


def _net_spec(params: Params, role: str, shape, arch: str | None = None, options: dict | None = None) -> dict:
    """A network's architecture as its sidecar records it (``options`` only when there are any, so
    files of the default architectures keep their bytes); ``arch`` defaults to params' family."""
    c, h, _ = shape
    arch = arch or (params.gan.generator if role == "generator" else params.gan.discriminator)
    return {"role": role, "arch": arch, "img_size": int(h), "in_chans": int(c), "latent_dim": params.gan.latent_dim,
            "spectral_norm": params.gan.spectral_norm, **({"options": dict(options)} if options else {})}


def _build(spec: dict):
    return models.create_gan(spec["arch"], spec["role"], img_size=spec["img_size"], in_chans=spec["in_chans"],
                             latent_dim=spec["latent_dim"], spectral_norm=spec["spectral_norm"],
                             **spec.get("options", {}))


def new_net(params: Params, role: str, shape, device: str, arch: str | None = None, options: dict | None = None):
    """A freshly initialised network (weights from torch's global generator: seed it first)."""
    return _build(_net_spec(params, role, shape, arch, options)).to(device)


def net_spec_of(path: str, role: str) -> dict:
    """The architecture the sidecar of ``path`` records for its ``role`` network."""
    spec = artifacts.read_json(artifacts.sidecar(path)).get("nets", {}).get(role)
    if spec is None:
        raise ArtifactError(f"{path}: holds no {role}")
    return spec


def save_nets(path: str, nets: dict, specs: dict, meta: dict) -> None:
    tensors = {f"{role}.{k}": v for role, net in nets.items() for k, v in net.state_dict().items()}
    artifacts.save_tensors(path, tensors, {**meta, "nets": specs})


def load_net(path: str, role: str, device: str):
    """The ``role`` network stored in ``path`` (hash-checked), in eval mode."""
    tensors, meta = artifacts.load_tensors(path, device)
    spec = meta.get("nets", {}).get(role)
    if spec is None:
        raise ArtifactError(f"{path}: holds no {role} (it holds {', '.join(meta.get('nets', {})) or 'no network'})")
    with torch.random.fork_rng(devices=[]):  # building initialises weights: leave the caller's RNG alone
        net = _build(spec)
    prefix = f"{role}."
    net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
    return net.to(device).eval()


def _load_strategy(doc: dict, sid: str, device: str):
    ref = checked_ref(doc, sid)
    return load_net(ref["path"], ref["player"], device)


def _optim(params: Params, *, warmup: bool = False) -> GanOptim:
    g = params.gan
    return GanOptim(batch_size=g.batch_size, lr_generator=g.lr_generator,
                    lr_discriminator=g.warmup_lr_discriminator if warmup else g.lr_discriminator,
                    betas=tuple(g.betas))


def _steps_per_epoch(params: Params, n: int) -> int:
    return max(1, math.ceil(n / params.gan.batch_size))


def _latents(params: Params) -> torch.Tensor:
    return fixed_latents(runtime.derive_seed(params.seed, "payoff_latents"), params.gan.payoff_latents,
                         params.gan.latent_dim)


# ----------------------------------------------------------------------------- jobs


def train_reference(params: Params, data: str, out: str) -> dict:
    """The classifier whose features and logits score generated images (FID, IS, classes covered)."""
    seed = runtime.derive_seed(params.seed, "reference")
    device = runtime.setup(seed, params.device, params.threads)
    ds = load_dataset(data, device, train_device="cpu")
    ref = params.gan.reference
    meta = classifiers.train_and_save(params, ds, out, arch=ref.arch, defense="erm", epochs=ref.epochs, seed=seed,
                                      device=device, inputs=[data], stage_keys=stage_params(params, "train",
                                                                                            "reference"),
                                      desc="reference classifier", role="reference")
    return meta  # its test accuracy is recorded by every evaluation that uses it


def _accuracy(model, x, y) -> float:
    return accuracy(model, x, y)


def _ordinary_gan(params: Params, data: str, seed: int, epochs: int, desc: str):
    """Fresh generator and discriminator trained together for ``epochs`` (the warm-up's optimiser):
    (dataset, device, nets, their specs, training stats). The DO warm-up and the base GAN."""
    device = runtime.setup(seed, params.device, params.threads)
    ds = load_dataset(data, device, train_device="cpu")
    specs = {r: _net_spec(params, r, ds.shape) for r in ROLES}
    nets = {r: _build(specs[r]).to(device) for r in ROLES}
    stats = train_gan(nets["generator"], nets["discriminator"], ds.x["train"], epochs=epochs,
                      optim=_optim(params, warmup=True), seed=seed, desc=desc, n_critic=params.gan.n_critic)
    return ds, device, nets, specs, stats


def train_base_gan(params: Params, data: str, out: str, population: str | None = None) -> dict:
    """Ordinary GAN training with the DO run's total budget: its player-epochs (``base_gan``,
    ``GanGame.budget``) or, given the closed DO ``population``, its counted passes
    (``base_gan_passes``: every DO job's forward + backward passes, :func:`doracle.games.graph.model_cost`,
    divided by what one epoch of ordinary GAN training counts; the nearest whole number of epochs)."""
    method = "base_gan" if population is None else "base_gan_passes"
    seed = runtime.derive_seed(params.seed, "baseline", method)
    budget = game_of(params).budget(params)
    epochs = budget["base_gan_epochs"]
    if population is not None:
        ds = load_dataset(data, "cpu")
        per_epoch = epoch_passes(len(ds.y["train"]), params.gan.batch_size, params.gan.n_critic)
        do_passes = graph.model_cost(params, population)["passes"]
        epochs = max(1, round(do_passes / per_epoch))
        budget = {**budget, "matched": "passes", "do_passes": do_passes, "passes_per_epoch": per_epoch,
                  "base_gan_passes_epochs": epochs}
    _, device, nets, specs, stats = _ordinary_gan(params, data, seed, epochs, method.replace("_", " "))
    meta = artifacts.metadata("gan", experiment=params.experiment, params=stage_params(params, "train", "baseline"),
                              seed=seed, inputs=[data, *([population] if population else [])], role="baseline",
                              method=method, budget=budget, training=stats, compute=stats["compute"], device=device)
    save_nets(out, nets, specs, meta)
    return meta


def epoch_passes(n_train: int, batch_size: int, n_critic: int = 1) -> int:
    """The passes one epoch of :func:`~doracle.games.gan.train.train_gan` counts: per batch of b
    images, the generator's forward and the discriminator's forward and backward on the real and the
    fake batch (5 b), and on a generator step (every ``n_critic``-th batch) the discriminator's
    forward and backward and the generator's backward (3 b more)."""

    return sum(5 * (e - s) + (3 * (e - s) if (k + 1) % n_critic == 0 else 0)
               for k, (s, e) in enumerate(_spans(n_train, batch_size)))


def init(params: Params, data: str, init_out: str, out: str) -> dict:
    """Iteration 0: a warm-up of ordinary GAN training; its discriminator d000 and generator g000
    and their 1x1 payoff."""
    seed = runtime.derive_seed(params.seed, "init")
    ds, device, nets, specs, stats = _ordinary_gan(params, data, seed, params.gan.warmup_epochs, "warm-up")
    save_nets(init_out, nets, specs, artifacts.metadata(
        "gan", experiment=params.experiment, params=stage_params(params, "init"), seed=seed, inputs=[data], role="warmup", training=stats,
        compute=stats["compute"], device=device))
    with compute.PassCounter(list(nets.values())) as counter:
        cell = payoff_cell(nets["generator"], nets["discriminator"], ds.x["payoff"], _latents(params))
    state = DOState(["d000"], ["g000"], np.array([[cell.value]]), np.ones(1), np.ones(1), cell.value)
    doc = _population_doc(params, state, np.array([[cell.stderr]]), cell.n, {
        "d000": _strategy(init_out, "discriminator"), "g000": _strategy(init_out, "generator")}, seed)
    doc["compute"] = counter.to_json()  # the warm-up's own compute is in the init file's sidecar
    write_json(out, doc)
    return doc


def best_response(params: Params, player: str, data: str, state_path: str, iteration: int, out: str) -> dict:
    """A generator trained against sigma_D, or a discriminator trained against sigma_G (``gan.oracle:
    frozen``), or (``player == "pair"``, ``gan.oracle: cotrained``) a new generator and a new
    discriminator trained together, each also against the other's stored mixture (the authors')."""
    stage = f"best_response_{player}"
    state, doc = read_population(state_path)
    if state.converged:
        skip_artifact(out, f"converged at iteration {state.iteration}", params, stage)
        return {"skipped": True}
    seed = runtime.derive_seed(params.seed, stage, iteration)
    device = runtime.setup(seed, params.device, params.threads)
    ds = load_dataset(data, device, train_device="cpu")
    pair = player == game_of(params).PAIR
    roles = ROLES if pair else (player,)
    mixtures = {r: _opponents(state, doc, r, device) for r in roles}  # each role's opponent mixture
    nets, specs, starts, found = {}, {}, {}, {}
    for role in roles:
        ids, probs, opponents = mixtures[role]
        nets[role], specs[role], start, searched = _new_player(params, role, ds, state, doc, opponents, probs, seed,
                                                               device, iteration)
        if start:
            starts[role] = start
        if searched:
            found[role] = searched
    desc = f"it{iteration:03d} {player}"
    if pair:
        g = params.gan
        stats = train_pair(nets["generator"], nets["discriminator"], ds.x["train"], epochs=g.pair_epochs,
                           optim=_optim(params), seed=seed, desc=desc, n_critic=g.n_critic,
                           generators=mixtures["discriminator"][2], generator_probs=mixtures["discriminator"][1],
                           discriminators=mixtures["generator"][2], discriminator_probs=mixtures["generator"][1],
                           weight=g.opponent_weight)
        opponent = {r: {"ids": mixtures[r][0], "probs": mixtures[r][1]} for r in roles}
    else:
        ids, probs, opponents = mixtures[player]
        stats = _train_player(params, player, nets[player], opponents, probs, ds, seed, desc)
        opponent = {"ids": ids, "probs": probs}
    extra = {}
    if starts:
        extra["warm_start_from"] = starts if pair else starts[player]
    nas_cost = [f["compute"] for f in found.values() if "compute" in f]
    if found:
        extra["nas"] = found if pair else found[player]
    meta = artifacts.metadata("gan", experiment=params.experiment, params=stage_params(params, stage), seed=seed,
                              inputs=[data, state_path], role=player, iteration=iteration, opponent=opponent,
                              training=stats, compute=compute.add(stats["compute"], *nas_cost) if nas_cost
                              else stats["compute"], device=device, **extra)
    save_nets(out, nets, specs, meta)
    return meta


def _opponents(state, doc: dict, role: str, device: str) -> tuple[list[str], list[float], list]:
    """The opponent mixture a ``role`` best response plays: (ids, probabilities, loaded networks)."""
    ids, probs = support(state, "col" if role == "discriminator" else "row")
    return ids, probs, [_load_strategy(doc, i, device) for i in ids]


def _new_player(params: Params, role: str, ds, state, doc: dict, opponents: list, probs: list[float], seed: int,
                device: str, iteration: int | None, search: bool = True):
    """A best response's network before training: its architecture (DONAS's choice when the role
    searches), warm-started from the role's best current member (``gan.warm_start``) when that has
    the same architecture. Returns (net, spec, the member it starts from or None, the search record)."""
    arch, options, found = None, {}, {}
    if search and params.nas.searches(role):
        arch, options, found = _search(params, role, ds, opponents, probs, seed, device, iteration)
        runtime.setup(seed, params.device, params.threads)  # the full training starts as a plain one would
    spec = _net_spec(params, role, ds.shape, arch, options)
    net = _build(spec).to(device)
    start = None
    if params.gan.warm_start:
        member = best_member(state, "row" if role == "discriminator" else "col")
        if net_spec_of(checked_ref(doc, member)["path"], role) == spec:
            net.load_state_dict(_load_strategy(doc, member, device).state_dict())
            start = member
        else:  # DONAS chose another architecture than the best member's: train from scratch
            found["warm_start_skipped"] = f"{member} is another architecture"
    return net, spec, start, found


def close(params: Params, data: str, state_path: str, model_out: str, out: str) -> dict:
    """The closing step: a discriminator trained against the final sigma_G (the frozen oracle's
    discriminator best response, ``gan.discriminator_epochs``, warm-started as best responses are,
    never searching architectures), its row of V, and the last meta-solve. Its gain is the deployed
    generator mixture's exploitability (:func:`doracle.games.population.close_job`)."""

    def respond(state, doc, sid, path):
        seed = runtime.derive_seed(params.seed, "closing")
        device = runtime.setup(seed, params.device, params.threads)
        ds = load_dataset(data, device, train_device="cpu")
        ids, probs, opponents = _opponents(state, doc, "discriminator", device)
        net, spec, start, _ = _new_player(params, "discriminator", ds, state, doc, opponents, probs, seed, device,
                                          None, search=False)
        stats = _train_player(params, "discriminator", net, opponents, probs, ds, seed, f"closing {sid}")
        meta = artifacts.metadata("gan", experiment=params.experiment, params=stage_params(params, "closing"),
                                  seed=seed, inputs=[data, state_path], role="discriminator", closing=sid,
                                  opponent={"ids": ids, "probs": probs}, training=stats, compute=stats["compute"],
                                  device=device, **({"warm_start_from": start} if start else {}))
        save_nets(path, {"discriminator": net}, {"discriminator": spec}, meta)
        return meta

    return close_job(params, game_of(params), state_path, model_out, out, respond, _cells(params, data), [data])


def _train_player(params: Params, player: str, net, opponents: list, probs: list[float], ds, seed: int, desc: str,
                  epochs: int | None = None) -> dict:
    """A best response's training: ``epochs`` (default: the player's ``gan.*_epochs``) against the
    opponent mixture."""
    optim = _optim(params)
    if player == "generator":
        steps = (epochs or params.gan.generator_epochs) * _steps_per_epoch(params, len(ds.y["train"]))
        return train_generator(net, opponents, probs, optim=optim, seed=seed, desc=desc, steps=steps)
    return train_discriminator(net, opponents, probs, ds.x["train"], epochs=epochs or params.gan.discriminator_epochs,
                               optim=optim, seed=seed, desc=desc)


def _search(params: Params, player: str, ds, opponents: list, probs: list[float], seed: int, device: str,
            iteration: int) -> tuple[str, dict, dict]:
    """DONAS for a GAN player: candidates trained for ``nas.short_epochs`` (player-epochs) against
    the opponent mixture, scored by their expected V against it on the payoff split and the fixed
    payoff latents (the payoff job's cells); the discriminator maximises, the generator minimises."""

    cfg = params.nas
    cand_seed = runtime.derive_seed(seed, "nas")
    z = _latents(params)

    def train_and_score(arch, options):
        runtime.setup(cand_seed, params.device, params.threads)  # every candidate starts alike
        net = new_net(params, player, ds.shape, device, arch, options)
        stats = _train_player(params, player, net, opponents, probs, ds, cand_seed,
                              f"it{iteration:03d} {player} candidate {arch}", epochs=cfg.short_epochs)
        with compute.PassCounter([net, *opponents]) as counter:
            cells = [payoff_cell(net, o, ds.x["payoff"], z) if player == "generator" else
                     payoff_cell(o, net, ds.x["payoff"], z) for o in opponents]
        score = sum(p * c.value for p, c in zip(probs, cells, strict=True))
        return score, {"epochs": cfg.short_epochs, "cells": [c.value for c in cells],
                       "train_seconds": stats["train_seconds"], "compute": compute.add(stats["compute"],
                                                                                       counter.to_json())}

    result = nas.search(cfg.space[player], candidates=cfg.candidates, seed=cand_seed,
                        direction="maximize" if player == "discriminator" else "minimize",
                        train_and_score=train_and_score)
    arch, options = nas.chosen(result)
    full = params.gan.generator_epochs if player == "generator" else params.gan.discriminator_epochs
    found = nas.record(result, full)
    found["compute"] = compute.add(*(c["compute"] for c in result["candidates"]))
    return arch, options, found


def _cells(params: Params, data: str):
    """The payoff cells' evaluator of the payoff and closing jobs: ``cells(doc, [(d, g), ...])``
    gives V(g, d) on the payoff split and the fixed payoff latents, with standard errors."""

    def cells(doc, todo):
        device = runtime.setup(0, params.device, params.threads)
        ds = load_dataset(data, device)
        z = _latents(params)
        nets, values, errs, n = {}, {}, {}, 0
        for sid in dict.fromkeys(s for cell in todo for s in cell):
            nets[sid] = _load_strategy(doc, sid, device)
        with compute.PassCounter(list(nets.values())) as counter:
            for r, c in todo:
                cell = payoff_cell(nets[c], nets[r], ds.x["payoff"], z)
                values[(r, c)], errs[(r, c)], n = cell.value, cell.stderr, cell.n
        return values, errs, n, counter.to_json()

    return cells


def payoff(params: Params, data: str, state_path: str, iteration: int, row: str, col: str, out: str) -> dict:
    """The new discriminator's row and the new generator's column of V(G, D)."""
    return payoff_job(params, game_of(params), state_path, iteration, row, col, out, _cells(params, data), [data])


# ----------------------------------------------------------------------------- evaluation


def _generators(label: str, population: str | None, checkpoint: str | None, device: str) -> dict:
    """{model name: (generators, probabilities, info)} to score for one evaluation job."""
    if checkpoint is not None:
        g = load_net(checkpoint, "generator", device)
        return {label: ([g], [1.0], {"checkpoint": checkpoint, "sha256": sha256_file(checkpoint),
                                     "produced_by": checkpoint})}
    state, doc = read_population(population)
    if label == "do_mixture":
        ids, probs = support(state, "col")
        return {label: ([_load_strategy(doc, i, device) for i in ids], probs,
                        {"members": ids, "probs": probs, "selected_by": "the DO meta-strategy (sigma_G)",
                         "produced_by": population})}
    if label == "do_members":
        return {i: ([_load_strategy(doc, i, device)], [1.0],
                    {"members": [i], "probs": [1.0], "sigma": float(p), "selected_by": "a final generator",
                     "produced_by": doc["strategies"][i]["path"]})
                for i, p in zip(state.col_ids, state.sigma_col, strict=True)}
    raise ConfigError(f"unknown GAN evaluation target {label!r}; valid: {', '.join(GAMES.get('gan').TARGETS)}")


def encode_grid(images: torch.Tensor) -> dict:
    """Images (N, C, H, W) in [0, 1] as JSON: 8-bit, base64 (what a PNG of them shows)."""

    x = (images.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    return {"shape": list(x.shape), "uint8_base64": base64.b64encode(x.tobytes()).decode()}


def evaluate(params: Params, data: str, label: str, out: str, *, population: str | None, checkpoint: str | None,
             reference: str) -> dict:
    """Score each model's generated images against the real images outside the training split
    (payoff + test), as many generated as real (``gan.metrics.samples`` caps both). Every model
    gets the same latents (a mixture draws each image's member from its probabilities) and the
    same bootstrap resamples, so the metrics job can compare any two of them paired."""
    # torchmetrics: the evaluation job's own
    from doracle.evaluation.generative import GenerativeMetrics

    seed = runtime.derive_seed(params.seed, "evaluate")
    device = runtime.setup(seed, params.device, params.threads)
    ds = load_dataset(data, device)
    cfg = params.gan.metrics
    classifier, ref_meta = classifiers.load(reference, device)
    real = torch.cat([ds.x["payoff"], ds.x["test"]])
    real = real[:cfg.samples] if cfg.samples is not None else real
    if len(real) < cfg.is_split_size:
        raise ConfigError(f"gan.metrics.is_split_size: {cfg.is_split_size} is more than the {len(real)} real images "
                          "outside the training split (and so the generated images per model)")
    share = cfg.min_class_share or 0.5 / int(ds.meta["num_classes"])
    metrics = GenerativeMetrics(classifier, real, k=cfg.nearest_k, split_size=cfg.is_split_size, seed=seed,
                                min_share=share, inception=cfg.inception, bootstrap=cfg.bootstrap)
    t0 = time.perf_counter()
    results = {}
    grid_seed = runtime.derive_seed(params.seed, "report", "grid")
    for name, (gens, probs, info) in _generators(label, population, checkpoint, device).items():
        with compute.PassCounter(gens) as counter:
            # the same latents for every model (MixtureSampler draws the members first, then the latents)
            fake, drawn = sample_mixture(gens, probs, len(real), runtime.derive_seed(seed, "samples"))
        shares = torch.bincount(drawn, minlength=len(gens)).double() / len(drawn)
        # the report's sample grid, drawn here (the report job is torch-free): the same seed for every model
        with torch.random.fork_rng(devices=[]):
            grid = sample_mixture(gens, probs, cfg.grid, grid_seed)[0]
        results[name] = {**metrics(fake), **info, "drawn_shares": shares.tolist(), "sampling": counter.to_json(),
                         "grid": encode_grid(grid)}
    # the floor for FID at this sample size: as many real training images against the same real images
    floor_images = ds.x["train"][:len(real)]
    floor = metrics(floor_images)
    floor = {"fid": floor["fid"], "fid_interval": floor["fid_interval"], "n": len(floor_images)}
    result = {
        "kind": "evaluation", "game": "gan", "experiment": params.experiment, "label": label, "seed": seed,
        "params": stage_params(params, "evaluate"),
        "models": results, "fid_real_vs_real": floor["fid"], "fid_real_vs_real_detail": floor, "data": data,
        "real_grid": encode_grid(ds.x["test"][:cfg.grid]),
        "reference": {"path": reference, "sha256": ref_meta["sha256"], "arch": ref_meta["arch"],
                      "train_accuracy": ref_meta["training"]["train_accuracy"],
                      "test_accuracy": _accuracy(classifier, ds.x["test"], ds.y["test"])},
        "eval_seconds": round(time.perf_counter() - t0, 3),
        "inputs": artifacts.inputs_record((data, population or checkpoint, reference)),
    }
    write_json(out, result)
    return result
