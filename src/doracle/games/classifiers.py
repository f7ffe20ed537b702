"""Classifier artifacts: build, save and load (safetensors + JSON sidecar, hash-checked)."""

from __future__ import annotations

from pathlib import Path

import torch

from doracle import artifacts, compute, models
from doracle.data import Dataset
from doracle.defenses import make_defense, resume
from doracle.defenses.training import accuracy, place_training_split, train
from doracle.errors import ConfigError


def build(arch: str, data_meta: dict, options: dict | None = None):
    """Classifier ``arch`` with its architecture ``options`` (width, hidden, ...) for the data."""
    c, h, w = data_meta["shape"]
    return models.create(arch, num_classes=int(data_meta["num_classes"]), in_chans=c, img_size=h,
                         mean=data_meta["mean"], std=data_meta["std"], **(options or {}))


def new_classifier(arch: str, ds: Dataset, device: str, options: dict | None = None):
    """A fresh classifier for ``ds``, checked to take its images (one forward pass of a blank image
    in eval mode: no randomness drawn, no statistics updated) before any training or output."""
    model = build(arch, ds.meta, options).to(device)
    c, h, w = ds.meta["shape"]
    was_training = model.training
    try:
        with torch.no_grad():
            logits = model.eval()(torch.zeros(1, c, h, w, device=device))
    except Exception as exc:  # noqa: BLE001 - whatever the model raises on a shape it cannot take
        raise ConfigError(f"architecture {arch!r} does not fit the data's images ({c}x{h}x{w}, "
                          f"{ds.meta.get('dataset', 'this data set')}): {type(exc).__name__}: {exc}") from None
    finally:
        model.train(was_training)
    if tuple(logits.shape) != (1, int(ds.meta["num_classes"])):
        raise ConfigError(f"architecture {arch!r} gives {list(logits.shape)} logits for one image, expected "
                          f"[1, {ds.meta['num_classes']}] (the data's classes)")
    return model


def check_fits(path: str | Path, meta: dict, data_meta: dict) -> None:
    """Refuse a classifier ``path`` (sidecar ``meta``) built for other images or classes than ``data_meta``'s."""
    built = meta.get("data", {})
    if list(built.get("shape", [])) != list(data_meta["shape"]) or \
            int(built.get("num_classes", -1)) != int(data_meta["num_classes"]):
        raise ConfigError(
            f"{path}: a {meta.get('arch')} classifier built for {built.get('dataset')} images of shape "
            f"{built.get('shape')} and {built.get('num_classes')} classes does not fit this data set's "
            f"({data_meta.get('dataset')}: shape {data_meta['shape']}, {data_meta['num_classes']} classes)")


def arch_record(arch: str, options: dict | None) -> dict:
    """The sidecar keys naming an architecture: ``arch``, and ``arch_options`` only when there are
    any (so files of default architectures keep their bytes)."""
    return {"arch": arch, **({"arch_options": dict(options)} if options else {})}


def fit(params, ds: Dataset, *, arch: str, options: dict | None, defense: str, epochs: int, seed: int, device: str,
        desc: str, opponent: dict | None = None, init=None, checkpoint=None, fingerprint: str = "",
        max_steps: int | None = None):
    """A fresh classifier ``arch`` (``options``; or ``init``'s weights) trained with ``defense`` (and
    the DO ``opponent`` term) for ``epochs`` (or ``max_steps`` batches): (model, training stats).
    Nothing is saved."""

    model = new_classifier(arch, ds, device, options)
    if init is not None:  # warm start: the architecture is the same, the weights a member's
        model.load_state_dict(init.state_dict())
    kwargs = {} if opponent is None else {"opponent": opponent["opponent"], "opponent_weight": opponent["weight"]}
    x_train, placement = place_training_split(ds.x["train"], device, params.training.data_placement)
    y_train = ds.y["train"].to(x_train.device)
    stats = train(model, make_defense(defense, params), x_train, y_train, params.training,
                  epochs=epochs, seed=seed, desc=desc, checkpoint=checkpoint, fingerprint=fingerprint,
                  augmentation=params.augmentation, max_steps=max_steps, **kwargs)
    stats["data_placement"] = placement
    stats["train_accuracy"] = accuracy(model, x_train, y_train)
    return model, stats


def data_ref(ds: Dataset) -> dict:
    keep = ("dataset", "shape", "num_classes", "mean", "std", "split_indices_sha256")
    return {k: ds.meta[k] for k in keep}


def train_and_save(params, ds: Dataset, out: str, *, arch: str, defense: str, epochs: int, seed: int, device: str,
                   inputs: list[str], stage_keys: dict, desc: str, arch_options: dict | None = None,
                   extra_compute: dict | None = None, max_steps: int | None = None, **extra) -> dict:
    """Train a fresh classifier ``arch`` (with ``arch_options``) with ``defense`` (``extra`` may carry
    the DO opponent term and a warm start ``init``), save it with its metadata, return the metadata.
    ``extra_compute``: compute the job spent before this training (an architecture search), added
    to the recorded ``compute``. The AT game's base model, baselines and defender best responses,
    and the GAN game's reference classifier."""

    opponent = extra.pop("opponent", None)
    init = extra.pop("init", None)
    if opponent is not None:
        extra["opponent"] = {k: opponent[k] for k in ("ids", "probs", "weight", "materialized")}
    # a resumable state is only resumed by the same job: same params, seed, inputs and opponents
    fingerprint = artifacts.digest({"params": stage_keys, "seed": seed, "defense": defense, "epochs": epochs,
                                    **({"max_steps": max_steps} if max_steps is not None else {}),
                                    "inputs": artifacts.inputs_record(inputs),
                                    **({"arch_options": arch_options} if arch_options else {}), **extra})
    ckpt = resume.checkpoint_path(out)
    model, stats = fit(params, ds, arch=arch, options=arch_options, defense=defense, epochs=epochs, seed=seed,
                       device=device, desc=desc, opponent=opponent, init=init, checkpoint=ckpt,
                       fingerprint=fingerprint, max_steps=max_steps)
    meta = artifacts.metadata("classifier", experiment=params.experiment, params=stage_keys, seed=seed, inputs=inputs, defense=defense,
                              **arch_record(arch, arch_options), data=data_ref(ds), training=stats, device=device,
                              compute=compute.add(stats["compute"], extra_compute) if extra_compute
                              else stats["compute"], **extra)
    save(out, model, meta)
    resume.remove(ckpt)
    return meta


def save(path: str | Path, model: torch.nn.Module, meta: dict) -> None:
    artifacts.save_tensors(path, model.state_dict(), meta)


def load(path: str | Path, device: str = "cpu", data: dict | None = None) -> tuple[torch.nn.Module, dict]:
    """Rebuild the classifier recorded in ``path``'s sidecar and load its (hash-checked) weights;
    with ``data`` (a data set's meta), refuse one built for other images (:func:`check_fits`)."""
    state, meta = artifacts.load_tensors(path, device)
    if data is not None:
        check_fits(path, meta, data)
    with torch.random.fork_rng(devices=[]):  # building initialises weights: leave the caller's RNG alone
        model = build(meta["arch"], meta["data"], meta.get("arch_options"))
    model.load_state_dict(state)
    return model.to(device).eval(), meta
