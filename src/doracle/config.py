"""params.yaml: one schema (pydantic), one loader, used by the Snakefile at load time and by every
CLI subcommand. An unknown key, a wrong type or an out-of-range value fails before any work is
done, with a message naming the key (``do.defender.opponent_weight: ...``).

Registry names (attacks, defenses, meta-solvers, pruners, models) are checked by
:func:`doracle.games.checks.check_names`, where the registries are known; this module is the
lowest layer (it imports only :mod:`doracle.errors` and :mod:`doracle.registry`), and the light
jobs (LP solve, pruning) validate the schema only.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
import types
import typing
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from doracle import registry
from doracle.errors import ConfigError, did_you_mean, unknown_name

DEFAULT_PARAMS = "params.yaml"


def _number_types(annotation) -> set:
    """The plain types an annotation admits (Annotated, Optional and unions unwrapped)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _number_types(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return set().union(*(_number_types(a) for a in get_args(annotation)))
    return {annotation} if isinstance(annotation, type) else set()


#: the largest integer a params value may hold (the seed's range; every count and size is far below)
MAX_INT = 2**32 - 1


class _Strict(BaseModel):
    # inf and nan refused in every float (a non-finite lr or eps passes every range check)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _plain_numbers(cls, data):
        """YAML's true / false are 1 / 0 to pydantic's int and float: refused where a number is due.
        An integer beyond :data:`MAX_INT` is refused too: no count, size or step number needs one,
        and torch's int64 overflows (a traceback, deep in a job) where Python's int does not."""
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                value = data.get(name)
                kinds = _number_types(field.annotation)
                if isinstance(value, bool) and bool not in kinds and kinds & {int, float}:
                    raise ValueError(f"{name}: a number is due, not the boolean {str(value).lower()}")
                for v in value if isinstance(value, list) else [value]:
                    if isinstance(v, int | float) and not isinstance(v, bool) and abs(v) > MAX_INT and (
                            isinstance(v, int) or int in kinds):
                        raise ValueError(f"{name}: {v} is out of range: doracle's integers (counts, sizes, "
                                         f"steps, seeds) are at most {MAX_INT} (2**32 - 1)")
        return data


def parse_fraction(value: Any) -> Fraction:
    """'8/255' -> Fraction(8, 255); 0.1 -> Fraction('0.1'). Rejects anything else."""
    if isinstance(value, bool):
        raise ValueError("must be a number or a fraction such as 8/255")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number or a fraction such as 8/255, got {value}")
    if isinstance(value, int | float):
        return Fraction(str(value))
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d*)?\s*(/\s*\d+(\.\d*)?\s*)?", value):
        num, _, den = value.partition("/")
        return Fraction(num.strip()) / (Fraction(den.strip()) if den else 1)
    raise ValueError(f"must be a number or a fraction such as 8/255, got {value!r}")


PosInt = Annotated[int, Field(ge=1)]
Prob = Annotated[float, Field(ge=0.0, le=1.0)]


class Data(_Strict):
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


class ModelCfg(_Strict):
    arch: str = "doracle_cnn_small"


class ThreatModel(_Strict):
    norm: Literal["linf", "l2"] = "linf"
    eps: str = "32/255"

    @field_validator("eps", mode="before")
    @classmethod
    def _eps(cls, v, info: ValidationInfo):
        f = parse_fraction(v)
        # an L-inf radius above 1 covers all of [0, 1]^d; an L2 radius may exceed 1 (up to sqrt(d))
        if info.data.get("norm", "linf") == "linf" and not 0 < f <= 1:
            raise ValueError(f"must be in (0, 1] under the linf threat model (inputs live in [0, 1]), got {v}")
        if not f > 0:
            raise ValueError(f"must be > 0, got {v}")
        return str(v)

    @property
    def eps_value(self) -> float:
        return float(parse_fraction(self.eps))


class Training(_Strict):
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


class AttackSpec(_Strict):
    """An attack by registered name; step sizes are in units of eps."""

    name: str
    steps: PosInt = 10
    rel_step_size: Annotated[float, Field(gt=0.0, le=2.0)] = 0.25
    restarts: PosInt = 1
    random_start: bool = True


class DefenseSpec(_Strict):
    """A defense method's settings: ``attack`` is its own (white-box) training attack, ``options``
    its method-specific knobs (checked against doracle.defenses.options), ``lr_schedule`` overrides
    training.lr_schedule for this method."""

    attack: AttackSpec | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    lr_schedule: Literal["constant", "cyclic", "piecewise"] | None = None


class Base(_Strict):
    defense: str = "pgd_at"  # an adversarially trained start, as in the authors' DO-AT code
    epochs: PosInt | None = None


class Defender(_Strict):
    defense: str = "pgd_at"
    epochs: PosInt | None = None
    # w: the defense's whole loss + w * CE on perturbations drawn from the attacker mixture
    opponent_weight: Annotated[float, Field(ge=0.0, le=100.0)] = 0.5
    warm_start: bool = True  # start from the current best member's weights (the authors' code does)


#: attacks whose strategy is not a function of the example alone: l2l trains its perturbation
#: network on the batch it attacks, so recomputing it per training batch would be another strategy
#: than the one stored and scored. Always cached (Params refuses on_the_fly or augmentation).
CACHED_ONLY = ("l2l",)


class Attacker(_Strict):
    attack: AttackSpec = Field(default_factory=lambda: AttackSpec(name="pgd"))
    # how the defender best response gets an attacker's perturbations of the training split:
    # cache = computed once by the attacker job and stored; on_the_fly = recomputed per batch
    # (on the augmented batch) against the frozen defender mixture the attacker is bound to;
    # auto = cache when the largest attacker population the pruners allow fits cache_budget_mb
    # and training batches are not augmented
    materialize: Literal["auto", "cache", "on_the_fly"] = "auto"
    cache_budget_mb: PosInt = 1024
    # more attacks the best response tries, within the threat model, on the payoff split: it keeps
    # the one (`attack` included) that lowers the defender mixture's expected accuracy most, and
    # records every candidate's score; {} = `attack` alone
    candidates: dict[str, AttackSpec] = Field(default_factory=dict)

    def specs(self) -> dict[str, AttackSpec]:
        """``attack`` (as ``attack``) and the candidates, in that order."""
        return {"attack": self.attack, **self.candidates}


class DO(_Strict):
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


#: the budgets a matched baseline can copy from the DO run (``<matched_defense>_<budget>``)
MATCHED_BUDGETS = ("epochs", "passes")


class Baselines(_Strict):
    methods: list[str] = Field(default_factory=lambda: ["erm", "pgd_at"])
    epochs: PosInt | None = None
    # baselines whose budget is the DO run's own: `epochs` = as many epochs as DO's defenders
    # trained in total, `passes` = as many counted passes as the whole DO run (to within one batch)
    matched: list[Literal["epochs", "passes"]] = Field(default_factory=lambda: ["epochs", "passes"])
    matched_defense: str = "pgd_at"

    @model_validator(mode="after")
    def _matched_names(self):
        if len(set(self.matched)) != len(self.matched):
            raise ValueError(f"matched: {self.matched} names a budget twice")
        clash = [f"{self.matched_defense}_{b}" for b in self.matched if f"{self.matched_defense}_{b}" in self.methods]
        if clash:
            raise ValueError(f"matched: {clash[0]} is the name of a matched baseline; remove it from methods")
        return self

    def matched_names(self) -> list[str]:
        """The matched baselines' names, ``<matched_defense>_<budget>``."""
        return [f"{self.matched_defense}_{b}" for b in self.matched]


AA_ATTACKS = Literal["apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square"]


class AutoAttackCfg(_Strict):
    """pyautoattack settings. ``standard`` is the reference; ``custom`` runs ``attacks`` with the
    budgets below (recorded in every metrics file)."""

    version: Literal["standard", "plus", "custom"] = "standard"
    attacks: list[AA_ATTACKS] = Field(default_factory=lambda: ["apgd-ce", "apgd-t", "fab-t", "square"])
    apgd_iterations: PosInt = 100
    target_classes: PosInt = 9
    square_queries: PosInt = 5000
    batch_size: PosInt = 500
    per_member: bool = True


class EpsCurve(_Strict):
    attack: AttackSpec = Field(default_factory=lambda: AttackSpec(name="pgd", steps=10, rel_step_size=0.25))
    eps: list[str] = Field(default_factory=lambda: ["0", "8/255", "16/255", "32/255", "48/255", "64/255"])

    @field_validator("eps", mode="before")
    @classmethod
    def _eps(cls, v):
        out = []
        for e in v:
            f = parse_fraction(e)
            if not 0 <= f <= 1:
                raise ValueError(f"every eps must be in [0, 1], got {e}")
            out.append(str(e))
        return out


class Evaluation(_Strict):
    attacks: dict[str, AttackSpec] = Field(default_factory=lambda: {
        "fgsm": AttackSpec(name="fgsm", steps=1, rel_step_size=1.0, random_start=False),
        "pgd": AttackSpec(name="pgd", steps=20, rel_step_size=0.1, restarts=2),
        "arc": AttackSpec(name="arc", steps=20, rel_step_size=1.0, random_start=False),
    })
    per_member: list[str] = Field(default_factory=lambda: ["pgd"])
    autoattack: AutoAttackCfg | None = Field(default_factory=AutoAttackCfg)
    eps_curve: EpsCurve | None = Field(default_factory=EpsCurve)
    max_examples: PosInt | None = None

    @model_validator(mode="after")
    def _members(self):
        for name in self.per_member:
            if name not in self.attacks:
                raise ValueError(f"per_member names {name!r}, which is not in evaluation.attacks")
        return self


GRES = r"^[A-Za-z0-9_]+(:[A-Za-z0-9_.]+)?(:\d+[TGM]?)?$"  # name[:type][:count], as sbatch --gres takes it
# sbatch options that have their own key below (the SLURM executor also refuses them in slurm_extra)
_MANAGED = {"--gres": "gres", "--gpus": "gpu", "-G": "gpu", "--partition": "slurm_partition",
            "-p": "slurm_partition", "--mem": "mem_mb", "--time": "runtime", "-t": "runtime",
            "--cpus-per-task": "cpus_per_task", "-c": "cpus_per_task", "--constraint": "constraint",
            "-C": "constraint"}


class JobResources(_Strict):
    """What one job of a rule family asks a cluster for: Snakemake resources, which the SLURM
    executor plugin turns into sbatch options. Local runs use none of it (only ``threads``)."""

    gpu: Annotated[int, Field(ge=0)] = 1
    gpu_model: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.]+$")] | None = None
    gres: Annotated[str, Field(pattern=GRES)] | None = None
    cpus_per_task: PosInt | None = None
    mem_mb: PosInt = 2000
    runtime: PosInt = 60
    slurm_partition: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+$")] | None = None
    constraint: str | None = None
    slurm_extra: str | None = None

    @model_validator(mode="after")
    def _consistent(self):
        if self.gpu_model and not self.gpu:
            raise ValueError(f"gpu_model {self.gpu_model!r} needs gpu >= 1")
        if self.gpu and self.gres and self.gres.split(":")[0] == "gpu":
            raise ValueError(f"ask for GPUs with gpu ({self.gpu}) or with gres ({self.gres!r}), not both")
        return self

    @field_validator("slurm_extra")
    @classmethod
    def _extra(cls, v):
        if v is None:
            return v
        for word in v.split():
            opt = word.split("=")[0]
            if opt in _MANAGED:
                raise ValueError(f"{opt} has its own key: use {_MANAGED[opt]}")
        return v


class GanReference(_Strict):
    """The classifier whose features and logits score generated images (FID, Inception-Score-style
    score, classes covered): trained on the same data by the ``train_reference`` job with
    ``training``'s optimiser settings."""

    arch: str = "doracle_cnn_small"
    epochs: PosInt = 6


class GanMetrics(_Strict):
    samples: PosInt | None = None         # generated images per model; null = as many as the real images
    #                                       (every image outside the training split); a number caps both
    nearest_k: PosInt = 5                 # k of precision / recall / density / coverage
    is_split_size: Annotated[int, Field(ge=2)] = 100  # images per Inception-Score split (fixed, so the
    #                                       score does not move with the sample count)
    bootstrap: Annotated[int, Field(ge=0, le=100_000)] = 200  # resamples of real images and latents
    #                                       for FID's 95% interval and the paired comparisons; 0 = none
    min_class_share: Annotated[float, Field(gt=0.0, lt=1.0)] | None = None  # a class counts as covered
    #                                       from this share of samples; null = half the uniform share
    inception: bool = False               # also FID / IS with torchvision's Inception-v3 weights (fetched on
    #                                       first use: clusters only; pip install -e ".[inception]")
    grid: PosInt = 64                     # images per sample grid in the report


class Gan(_Strict):
    """The GAN game (``game: gan``): generator and discriminator families, optimiser and budgets."""

    generator: str = "doracle_gen_dcgan"
    discriminator: str = "doracle_disc_dcgan"
    latent_dim: PosInt = 100
    spectral_norm: bool = False
    batch_size: Annotated[int, Field(ge=2)] = 64  # BatchNorm needs two images a batch
    lr_generator: Annotated[float, Field(gt=0.0)] = 1e-4
    lr_discriminator: Annotated[float, Field(gt=0.0)] = 2e-4
    betas: tuple[Annotated[float, Field(ge=0.0, lt=1.0)], Annotated[float, Field(ge=0.0, lt=1.0)]] = (0.5, 0.999)
    warmup_epochs: Annotated[int, Field(ge=0)] = 5  # 0: DO starts from freshly initialised networks
    warmup_lr_discriminator: Annotated[float, Field(gt=0.0)] = 2e-4
    # cotrained (the DO-GAN authors'): each iteration trains a new (G', D') pair together, each also
    # against the other's stored mixture; frozen: each player's best response against frozen opponents
    oracle: Literal["cotrained", "frozen"] = "cotrained"
    pair_epochs: PosInt = 2               # per co-trained pair (epochs of the training split's batches)
    n_critic: PosInt = 1                  # discriminator steps per generator step (pairs, warm-up, base GAN)
    opponent_weight: Annotated[float, Field(ge=0.0, le=100.0)] = 0.1  # w: a pair's stored-mixture terms
    generator_epochs: PosInt = 5          # per generator best response (frozen oracle)
    discriminator_epochs: PosInt = 5      # per discriminator best response (frozen oracle; the closing one)
    warm_start: bool = True
    payoff_latents: Annotated[int, Field(ge=2)] = 2000
    reference: GanReference = Field(default_factory=GanReference)
    metrics: GanMetrics = Field(default_factory=GanMetrics)

    @model_validator(mode="after")
    def _samples(self):
        m = self.metrics
        if m.samples is not None and m.samples <= m.nearest_k:
            raise ValueError(f"metrics.samples ({m.samples}) must exceed metrics.nearest_k "
                             f"({m.nearest_k}): precision / recall use each sample's k-th nearest neighbour")
        if m.samples is not None and m.samples < m.is_split_size:
            raise ValueError(f"metrics.samples ({m.samples}) is fewer than metrics.is_split_size ({m.is_split_size}): "
                             "the IS-style score needs one split of that many images")
        return self


class Nas(_Strict):
    """DONAS (Aung et al., arXiv 2410.04764): best responses that search architectures. A searching
    player's best response trains ``candidates`` architectures from ``space`` (Optuna TPE, seeded)
    for ``short_epochs`` against the opponent mixture, keeps the one with the best payoff against
    that mixture (payoff split) and trains it with the full budget (games/nas.py, docs/donas.md)."""

    enabled: bool = False
    players: list[str] = Field(default_factory=list)  # empty: every player of the game with a space
    candidates: PosInt = 4
    short_epochs: PosInt = 1
    # player -> family -> option -> choices
    space: dict[str, dict[str, dict[str, list[Any]]]] = Field(default_factory=dict)

    def searches(self, player: str) -> bool:
        """Whether ``player``'s best responses search architectures."""
        return self.enabled and player in self.space and (not self.players or player in self.players)


def nas_families(game: str) -> dict[str, tuple[str, ...]]:
    """The players of ``game`` whose best responses can search architectures, and the families
    each may choose from (doracle's own models: their options are known without torch)."""
    return {"at": {"defender": registry.OWN_MODELS},
            "gan": {"generator": registry.GAN_GENERATORS, "discriminator": registry.GAN_DISCRIMINATORS}}.get(game, {})


_INT_OPTIONS = ("width", "hidden", "depth")


def check_nas(params: Params) -> list[str]:
    """The problems of ``params.nas`` (an empty list when it is fine), each naming its key."""
    nas, errors = params.nas, []
    players = nas_families(params.game)
    for i, player in enumerate(nas.players):
        if player not in players:
            errors.append(f"nas.players[{i}]: the {params.game} game has no player {player!r} that can search "
                          f"architectures; valid: {', '.join(players)}")
    for player, families in nas.space.items():
        key = f"nas.space.{player}"
        if player not in players:
            errors.append(f"{key}: the {params.game} game has no player {player!r} that can search architectures; "
                          f"valid: {', '.join(players)}")
            continue
        if not families:
            errors.append(f"{key}: no architecture family to search")
        for family, options in families.items():
            if family not in players[player]:
                hint = did_you_mean(family, players[player])
                errors.append(f"{key}.{family}: unknown {player} family; {hint}valid: {', '.join(players[player])}")
                continue
            accepted = registry.ARCH_OPTIONS.get(family, ())
            for option, choices in options.items():
                okey = f"{key}.{family}.{option}"
                if option not in accepted:
                    errors.append(f"{okey}: {family} takes no option {option!r}; its options: "
                                  f"{', '.join(accepted) or 'none'}")
                elif not choices:
                    errors.append(f"{okey}: no choices (give at least one value)")
                elif option in _INT_OPTIONS and not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1
                                                         for c in choices):
                    errors.append(f"{okey}: choices must be integers >= 1, got {choices}")
                elif option == "batch_norm" and not all(isinstance(c, bool) for c in choices):
                    errors.append(f"{okey}: choices must be true or false, got {choices}")
                elif option == "activation" and not set(choices) <= set(registry.ACTIVATION_NAMES):
                    errors.append(f"{okey}: unknown activation in {choices}; valid: {', '.join(registry.ACTIVATION_NAMES)}")
                elif len(set(map(repr, choices))) != len(choices):
                    errors.append(f"{okey}: repeated choices {choices}")
    if nas.enabled:
        missing = [p for p in nas.players if p in players and p not in nas.space]
        for p in missing:
            errors.append(f"nas.space.{p}: nas.players names {p} but it has no search space")
        if not any(nas.searches(p) for p in players) and not missing:
            errors.append(f"nas.space: nas.enabled is true but no player has a search space (players that can "
                          f"search in the {params.game} game: {', '.join(players)})")
    return errors


class Resources(_Strict):
    """Cluster resources per rule family (doracle.pipeline.RULE_RESOURCES maps rules to families;
    the light rules run on the submitting host). Defaults are small enough for a laptop-sized
    node; params.yaml documents values for a GPU cluster."""

    train: JobResources = Field(default_factory=JobResources)
    best_response: JobResources = Field(default_factory=JobResources)
    payoff: JobResources = Field(default_factory=JobResources)
    evaluate: JobResources = Field(default_factory=lambda: JobResources(mem_mb=3000, runtime=120))


class Params(_Strict):
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


def _field_model(tp: Any) -> tuple[Any, bool]:
    """(the pydantic model a field's type holds or None, whether a mapping / list lies between)."""

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp, False
    if origin is Annotated:
        return _field_model(args[0])
    if origin in (dict, list) and args:
        return _field_model(args[-1])[0], True
    if origin in (typing.Union, types.UnionType):
        for a in args:
            m, container = _field_model(a)
            if m is not None:
                return m, container
    return None, False


def _node_model(model: Any, loc: tuple) -> Any:
    """The pydantic model class at ``loc`` below ``model`` (through optional fields, mappings and
    lists), or None: where an unknown key's valid siblings are listed."""
    node, entry = model, False
    for part in loc:
        if entry:  # a mapping's key or a list's index: its entries have the model already found
            entry = False
            continue
        if node is None or part not in node.model_fields:
            return None
        node, entry = _field_model(node.model_fields[part].annotation)
    return node


def format_errors(err: ValidationError, source: str, prefix: str = "", model: Any = None) -> str:
    """pydantic's errors as ``  key: message (got value)``: the value once (a message that already
    shows it is left as it is), unknown keys with the closest valid key ("did you mean"), wrong
    choices with the closest valid choice. ``model``: the model validated (default Params)."""
    lines = []
    for e in err.errors():
        after = ""
        loc = prefix + (".".join(str(p) for p in e["loc"]) or "<top level>")
        msg = e["msg"].removeprefix("Value error, ")
        got = e.get("input")
        if (field := re.match(r"([A-Za-z_]\w*): ", msg)) and isinstance(got, dict) and field[1] in got:
            # a model validator's message about one of its fields (_Strict._plain_numbers): that key
            loc = (f"{loc}." if e["loc"] else prefix) + field[1]
            msg, got = msg[field.end():], got[field[1]]
        if e["type"] == "extra_forbidden":
            parent = _node_model(model or Params, tuple(e["loc"][:-1]))
            valid = list(parent.model_fields) if parent is not None else []
            hint = did_you_mean(e["loc"][-1], valid)
            msg = f"unknown key; {hint}valid keys: {', '.join(valid)}" if valid else "unknown key"
        elif e["type"] == "literal_error":
            choices = re.findall(r"'([^']*)'", msg.removeprefix("Input should be "))
            after = did_you_mean(got, choices).strip() if isinstance(got, str) else ""
        shown = (e["type"] == "extra_forbidden" or isinstance(got, dict) or repr(got) in msg or f"got {got}" in msg
                 or (isinstance(got, bool) and str(got).lower() in msg))
        suffix = "" if shown else f" (got {got!r})"
        lines.append(f"  {loc}: {msg}{suffix}" + (f"; {after}" if after else ""))
    return f"{source}: invalid params:\n" + "\n".join(lines)


def validate(raw: Any, source: str = "params") -> Params:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        params = Params.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_errors(err, source)) from None
    problems = check_nas(params)
    if problems:
        raise ConfigError(f"{source}: invalid params:\n" + "\n".join(f"  {p}" for p in problems))
    for family, res in params.resources:
        if res.cpus_per_task is not None and res.cpus_per_task < params.threads:
            raise ConfigError(f"{source}: invalid params:\n  resources.{family}.cpus_per_task: "
                              f"{res.cpus_per_task} CPUs is fewer than threads ({params.threads}), "
                              "the torch threads every job runs (null = threads)")
    return params


def yaml_error(path: str | Path, exc: yaml.YAMLError) -> str:
    """A YAML syntax error as ``path:line:column: not valid YAML: problem`` (PyYAML's own text
    names ``"<unicode string>"``, not the file)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    what = ": ".join(x for x in (getattr(exc, "context", None), getattr(exc, "problem", None)) if x) or str(exc)
    return f"{where}: not valid YAML (line {mark.line + 1}): {what}" if mark is not None else \
        f"{where}: not valid YAML: {what}"


#: the most aliases (``*name``) a params document may use: each can repeat a whole subtree, so a
#: few nested ones expand without bound ("billion laughs")
MAX_ALIASES = 20


class _ParamsLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing duplicate keys (YAML keeps the last silently) and documents that
    use more than :data:`MAX_ALIASES` aliases."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self._aliases = getattr(self, "_aliases", 0) + 1
            if self._aliases > MAX_ALIASES:
                event = self.peek_event()
                raise yaml.constructor.ConstructorError(
                    None, None, f"more than {MAX_ALIASES} aliases (a document that expands without bound?)",
                    event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, str | int | float | bool) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first at line {seen[key].line + 1})",
                        key_node.start_mark)
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str):
    """A YAML document as doracle reads params and space files (:class:`_ParamsLoader`)."""
    return yaml.load(text, Loader=_ParamsLoader)  # noqa: S506 (a SafeLoader subclass)


def read_raw(path: str | Path, what: str = "params file") -> dict:
    """A params file's YAML (or another YAML file: ``what``) as a mapping (not validated); clear
    errors for a missing file, bad YAML (file and line), an empty file or a non-mapping."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: {what} not found")
    try:
        raw = load_yaml(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(yaml_error(p, exc)) from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to be a {what}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read the {what} ({type(exc).__name__}: {exc})") from None
    if raw is None or raw == {}:
        hint = (" A params file holds at least the keys it changes (a partial file is completed from its game's "
                "default file); `doracle check-params --params params.yaml --resolved OUT` writes a complete one"
                if what == "params file" else "")
        raise ConfigError(f"{p}: the {what} is empty (no keys).{hint}")
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: expected a mapping at the top level, got {type(raw).__name__}")
    return raw


def load(path: str | Path = DEFAULT_PARAMS) -> Params:
    """A complete params file, validated on its own (what every job reads). Partial files and
    overrides are resolved first (:func:`resolve`)."""
    return validate(read_raw(path), str(path))


# ---------------------------------------------------------------- overrides and partial files
def merge(base: dict, over: dict) -> dict:
    """``over`` merged into a copy of ``base``: mappings merge key by key (recursively), any other
    value (lists and null included) replaces. Snakemake's own rule for --configfile / --config."""

    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def dotted_tree(overrides: dict[str, Any]) -> dict:
    """``{"do.iterations": 3, "seed": 1}`` -> ``{"do": {"iterations": 3}, "seed": 1}`` (values that
    are mappings stay mappings, to be merged)."""
    out: dict = {}
    for key, value in overrides.items():
        parts = str(key).split(".")
        if not all(parts):
            raise ConfigError(f"override {key!r}: not a dotted params key (e.g. do.iterations)")
        node = out
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {key!r}: {p!r} is given a value and a sub-key at once")
            node = nxt
        node[parts[-1]] = merge(node[parts[-1]], value) if isinstance(node.get(parts[-1]), dict) \
            and isinstance(value, dict) else value
    return out


def set_key(raw: dict, key: str, value: Any) -> dict:
    """A copy of ``raw`` with the dotted ``key`` set to ``value``."""
    return merge(raw, dotted_tree({key: value}))


def default_experiments(root: str | Path = ".") -> list[str]:
    """The experiments a plain ``snakemake -c2`` (and ``doracle dvc-yaml``) runs: ``params.yaml``
    and every ``params-<name>.yaml`` beside it (this repository: params-gan.yaml), one complete
    params file per experiment. ``--configfile X`` (``dvc-yaml --params X``) runs X alone."""
    root = Path(root)
    return [DEFAULT_PARAMS, *sorted(str(p.relative_to(root)) for p in root.glob("params-*.yaml"))]


def base_of(raw: dict, root: str | Path = ".") -> str | None:
    """The default params file that completes a partial one: the first of
    :func:`default_experiments` playing the same game (no ``game`` key: ``at``), else params.yaml;
    None when there is none."""
    root = Path(root)
    files = [f for f in default_experiments(root) if (root / f).is_file()]
    game = raw.get("game", "at")
    for f in files:
        try:
            if read_raw(root / f).get("game", "at") == game:
                return f
        except ConfigError:
            continue
    return DEFAULT_PARAMS if DEFAULT_PARAMS in files else None


def missing_keys(path: str | Path, raw: dict, root: str | Path = ".") -> tuple[str | None, list[str]]:
    """(the default file that completes ``path`` (:func:`base_of`), the top-level keys of it that
    ``raw``, ``path``'s params, lacks): no keys for a complete file, or when there is no default
    file, or ``path`` is it."""
    base = base_of(raw, root)
    if base is None or Path(root, base).resolve() == Path(path).resolve():
        return base, []
    return base, [k for k in read_raw(Path(root, base)) if k not in raw]


#: the top-level sections only one game's files have (the others are in every complete file)
GAME_ONLY_SECTIONS = {"at": ("model", "threat_model", "defenses", "base", "baselines", "evaluation"), "gan": ("gan",)}


def complete_keys(game: str) -> list[str]:
    """The top-level keys of a complete params file of ``game`` (those of its default file:
    tests/test_reliability.py keeps the two equal)."""
    other = {k for g, keys in GAME_ONLY_SECTIONS.items() if g != game for k in keys}
    return [k for k in Params.model_fields if k not in other]


def load_complete(path: str | Path, root: str | Path = ".") -> Params:
    """A params file a job reads: complete (:func:`missing_keys`; with no default file in ``root``,
    every section of its game, :func:`complete_keys`), validated. A partial file is refused, naming
    the keys it lacks: a job called by hand would otherwise fill them with the schema's defaults,
    not the default file's (the workflow completes partial files itself and gives its jobs
    results/<exp>/params.yaml, DVC and sweeps complete files)."""
    raw = read_raw(path)
    base, missing = missing_keys(path, raw, root)
    if base is None:
        game = raw.get("game", "at")
        missing = [k for k in complete_keys(game if game in GAME_ONLY_SECTIONS else "at") if k not in raw]
    if missing:
        how = (f"(completed from {base}, as the workflow completes it)" if base else
               "in a folder holding the default params files (params.yaml, params-gan.yaml)")
        raise ConfigError(f"{path} is a partial params file (it has no {', '.join(missing)}): a job reads a complete "
                          f"one. Write it with `doracle check-params --params {path} --resolved complete.yaml` "
                          f"{how} and pass that")
    return validate(raw, str(path))


def resolve(path: str | Path, overrides: dict | None = None, root: str | Path = ".") -> tuple[dict, str | None]:
    """A params file as the workflow reads it: (the complete raw params, the default file it was
    completed from or None).

    A *complete* file has every top-level key of its game's default file (:func:`base_of`) and is
    taken as it stands: what it leaves out of a map (``evaluation.attacks.arc``) is gone. A
    *partial* file (say ``training: {epochs: 3}``, or an empty one) is merged over that default file
    key by key (:func:`merge`), as Snakemake merges a ``--configfile``. ``overrides`` (dotted keys or
    nested mappings, ``--config``'s) are merged last. Not validated: :func:`validate` the result."""
    raw = read_raw(path)
    completed_from = None
    base, missing = missing_keys(path, raw, root)
    if missing:
        raw, completed_from = merge(read_raw(Path(root, base)), raw), base
    if overrides:
        raw = merge(raw, dotted_tree(overrides))
    return raw, completed_from


def load_resolved(path: str | Path, overrides: dict | None = None, given: str = "",
                  root: str | Path = ".") -> tuple[Params, dict, str | None, str]:
    """:func:`resolve` then :func:`validate`: (params, the complete raw params, the default file a
    partial one was completed from or None, the sources as errors and headers name them: ``base +
    path [+ --config given]``). The workflow, ``check-params`` and sweeps read params files so."""
    raw, base = resolve(path, overrides, root)
    source = " + ".join(x for x in (base, str(path), f"--config {given}" if given else "") if x)
    return validate(raw, source), raw, base, source
