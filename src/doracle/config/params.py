"""The whole params file (:class:`Params`): the common sections (``data``, ``training``, ``do``) and
each game's (:mod:`.at`, :mod:`.gan`), ``nas`` and ``resources``; what a payoff split can resolve."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from doracle import registry
from doracle.config.at import (
    CACHED_ONLY,
    Attacker,
    Base,
    Baselines,
    Defender,
    DefenseSpec,
    Evaluation,
    ModelCfg,
    ThreatModel,
)
from doracle.config.base import PosInt, Strict
from doracle.config.gan import Gan
from doracle.config.nas import Nas
from doracle.config.resources import Resources
from doracle.errors import unknown_name


class Data(Strict):
    dataset: Literal["digits", "mnist", "cifar10", "svhn", "tinyimagenet"] = "digits"
    root: str = "data"
    download: bool = True
    splits: dict[Literal["train", "payoff", "test"], Annotated[float, Field(gt=0.0, lt=1.0)]] = Field(
        default_factory=lambda: {"train": 0.6, "payoff": 0.2, "test": 0.2})
    max_train: PosInt | None = None

    @field_validator("splits")
    @classmethod
    def _splits(cls, v):
        if set(v) != {"train", "payoff", "test"}:
            raise ValueError("needs exactly the keys train, payoff, test")
        if abs(sum(v.values()) - 1.0) > 1e-9:
            raise ValueError(f"fractions must sum to 1, got {sum(v.values()):g}")
        return v


class Training(Strict):
    epochs: PosInt = 10
    batch_size: PosInt = 64
    optimizer: Literal["adam", "sgd"] = "adam"
    lr: Annotated[float, Field(gt=0.0)] = 1e-3
    momentum: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.9
    weight_decay: Annotated[float, Field(ge=0.0)] = 0.0
    lr_schedule: Literal["constant", "cyclic", "piecewise"] = "constant"
    # piecewise: lr times lr_decay at each milestone (fractions of training; Madry et al., Rice et al.)
    lr_milestones: list[Annotated[float, Field(gt=0.0, lt=1.0)]] = Field(default_factory=lambda: [0.5, 0.75])
    lr_decay: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    # data augmentation of training batches (on the device, seeded): standard = the usual choice
    # for the data set (AUGMENTATION_STANDARD); payoff and test splits are never augmented
    augmentation: Literal["none", "standard", "crop", "crop_flip"] = "none"
    crop_padding: Annotated[int, Field(ge=1)] = 4
    # efficiency switches (results stay comparable; docs/performance.md)
    precision: Literal["fp32", "bf16"] = "fp32"  # bf16: autocast of forward/backward passes
    channels_last: bool = False
    compile: bool = False  # torch.compile the model for training
    data_placement: Literal["auto", "device", "pinned"] = "auto"  # where the training split lives


#: what ``training.augmentation: standard`` means per data set
AUGMENTATION_STANDARD = {"digits": "none", "mnist": "none", "cifar10": "crop_flip", "svhn": "crop",
                         "tinyimagenet": "crop_flip"}


class DO(Strict):
    # every iteration is 4-5 jobs of the DAG, built whole when the workflow loads: bounded so a typo
    # (1e6) cannot make Snakemake build millions of jobs
    iterations: Annotated[int, Field(ge=1, le=1000)] = 5
    tolerance: Annotated[float, Field(ge=0.0)] = 0.005
    meta_solver: str = "lp"
    pruners: list[str] = Field(default_factory=lambda: ["capacity"])
    capacity: PosInt = 8
    dominance_tolerance: Annotated[float, Field(ge=0.0)] = 0.0
    defender: Defender = Field(default_factory=Defender)
    attacker: Attacker = Field(default_factory=Attacker)


class Params(Strict):
    # a folder name under results/, logs/, benchmarks/ (and a sweep appends -<study>-tNNNN): at most 100
    experiment: Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=100)] = "digits"
    game: str = "at"
    seed: Annotated[int, Field(ge=0)] = 0
    device: str = "auto"
    threads: Annotated[int, Field(ge=1, le=1024)] = 1
    data: Data = Field(default_factory=Data)
    model: ModelCfg = Field(default_factory=ModelCfg)
    threat_model: ThreatModel = Field(default_factory=ThreatModel)
    training: Training = Field(default_factory=Training)
    defenses: dict[str, DefenseSpec] = Field(default_factory=dict)
    base: Base = Field(default_factory=Base)
    do: DO = Field(default_factory=DO)
    baselines: Baselines = Field(default_factory=Baselines)
    evaluation: Evaluation = Field(default_factory=Evaluation)
    resources: Resources = Field(default_factory=Resources)
    gan: Gan = Field(default_factory=Gan)
    nas: Nas = Field(default_factory=Nas)

    @field_validator("game")
    @classmethod
    def _game(cls, v):
        if v not in registry.GAMES:
            raise ValueError(unknown_name("game", v, registry.GAMES.names()))
        return v

    @model_validator(mode="after")
    def _materialize(self):
        for key, spec in self.do.attacker.specs().items():
            where = "do.attacker.attack" if key == "attack" else f"do.attacker.candidates.{key}"
            self._cached_only(spec.name, where)
        if self.do.attacker.materialize == "cache" and self.augmentation != "none":
            raise ValueError(
                f"do.attacker.materialize: cache cannot follow training.augmentation {self.training.augmentation!r} "
                "(stored perturbations are of the unaugmented images): use on_the_fly or auto")
        return self

    def _cached_only(self, attack: str, where: str) -> None:
        if attack in CACHED_ONLY and (self.do.attacker.materialize == "on_the_fly" or self.augmentation != "none"):
            raise ValueError(
                f"{where}: {attack} attacker strategies can only be cached (their perturbation network "
                "is trained on the batch they attack), so they need do.attacker.materialize cache or auto and "
                "training.augmentation none")

    @property
    def augmentation(self) -> str:
        """training.augmentation with ``standard`` resolved for the data set."""
        aug = self.training.augmentation
        return AUGMENTATION_STANDARD[self.data.dataset] if aug == "standard" else aug

    @field_validator("device")
    @classmethod
    def _device(cls, v):
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", v):
            raise ValueError(f"must be auto, cpu, cuda, cuda:N or mps, got {v!r}")
        return v

    def stage(self, *keys: str) -> dict:
        """The resolved sub-tree of params a stage reads (dotted keys), as plain JSON."""
        full = self.model_dump(mode="json")
        out: dict = {}
        for key in keys:
            node, dst = full, out
            parts = key.split(".")
            for p in parts[:-1]:
                node = node[p]
                dst = dst.setdefault(p, {})
            dst[parts[-1]] = node[parts[-1]]
        return out

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


#: images per dataset as prepared (all official splits pooled, then split train / payoff / test)
DATASET_SIZES = {"digits": 1797, "mnist": 70000, "cifar10": 60000, "svhn": 99289, "tinyimagenet": 110000}


def resolvable_tolerance(n_payoff: int) -> float:
    """The smallest DO tolerance the payoff split can certify: at iteration 1 each gain compares
    two cells of standard error up to 0.5 / sqrt(n), so the gap's upper bound (engine.gap_record,
    z = 1.645 per gain) stays above 2 z sqrt(2) 0.5 / sqrt(n) even when both gains are 0."""
    return 2 * 1.645 * (2 ** 0.5) * 0.5 / n_payoff ** 0.5


def payoff_resolution(n_payoff: int) -> float:
    """The smallest difference between two payoff cells (accuracies on the payoff split) that the
    split resolves: the 95 % half-width of the difference of two independent cells at accuracy 0.5,
    the worst case, 1.96 sqrt(2 * 0.25 / n). (Cells of one column are scored on the same examples;
    paired, they resolve less, but by how much depends on how often the two defenders disagree.)"""
    return 1.96 * (2 * 0.25 / max(n_payoff, 1)) ** 0.5


def payoff_statement(params: Params) -> str | None:
    """check-params' line on what the AT payoff split resolves (None for other games)."""
    if params.game != "at":
        return None
    n = int(DATASET_SIZES[params.data.dataset] * params.data.splits["payoff"])
    need = int((1.96 / 0.01) ** 2 * 0.5) + 1
    return (f"payoff split: about {n} examples: two payoff cells closer than {payoff_resolution(n):.3f} cannot be "
            f"told apart (95 %, worst case); resolving 0.01 takes {need} examples")


def warnings(params: Params) -> list[str]:
    """Valid but doubtful settings, for ``doracle check-params`` to print."""
    out = []
    n = int(DATASET_SIZES[params.data.dataset] * params.data.splits["payoff"])
    need = resolvable_tolerance(n)
    if params.do.tolerance < need:
        out.append(
            f"do.tolerance {params.do.tolerance:g} is below what the payoff split can resolve: with about {n} "
            f"payoff examples a payoff cell's standard error is up to {0.5 / n ** 0.5:.3f}, so the DO gap's "
            f"upper confidence bound stays above about {need:.3f} and convergence can at best be reported as "
            f"'within_noise'. To certify 'converged', enlarge data.splits.payoff (about "
            f"{int((2 * 1.645 * 2 ** 0.5 * 0.5 / max(params.do.tolerance, 1e-9)) ** 2)} payoff examples) or "
            f"raise do.tolerance to >= {need:.3f}.")
    return out
