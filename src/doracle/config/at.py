"""The adversarial-training game's params sections: ``model``, ``threat_model``, ``defenses``, ``base``,
``baselines``, ``evaluation`` and the DO players ``do.defender`` and ``do.attacker``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from doracle.config.base import PosInt, Strict, parse_fraction

#: the top-level sections of the AT game's params files only (config.load: partial files, complete keys)
SECTIONS = ("model", "threat_model", "defenses", "base", "baselines", "evaluation")


class ModelCfg(Strict):
    arch: str = "doracle_cnn_small"


class ThreatModel(Strict):
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


class AttackSpec(Strict):
    """An attack by registered name; step sizes are in units of eps."""

    name: str
    steps: PosInt = 10
    rel_step_size: Annotated[float, Field(gt=0.0, le=2.0)] = 0.25
    restarts: PosInt = 1
    random_start: bool = True


class DefenseSpec(Strict):
    """A defense method's settings: ``attack`` is its own (white-box) training attack, ``options``
    its method-specific knobs (checked against doracle.defenses.options), ``lr_schedule`` overrides
    training.lr_schedule for this method."""

    attack: AttackSpec | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    lr_schedule: Literal["constant", "cyclic", "piecewise"] | None = None


class Base(Strict):
    defense: str = "pgd_at"  # an adversarially trained start, as in the authors' DO-AT code
    epochs: PosInt | None = None


class Defender(Strict):
    defense: str = "pgd_at"
    epochs: PosInt | None = None
    # w: the defense's whole loss + w * CE on perturbations drawn from the attacker mixture
    opponent_weight: Annotated[float, Field(ge=0.0, le=100.0)] = 0.5
    warm_start: bool = True  # start from the current best member's weights (the authors' code does)


#: attacks whose strategy is not a function of the example alone: l2l trains its perturbation
#: network on the batch it attacks, so recomputing it per training batch would be another strategy
#: than the one stored and scored. Always cached (Params refuses on_the_fly or augmentation).
CACHED_ONLY = ("l2l",)


class Attacker(Strict):
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


#: the budgets a matched baseline can copy from the DO run (``<matched_defense>_<budget>``)
MATCHED_BUDGETS = ("epochs", "passes")


class Baselines(Strict):
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


class AutoAttackCfg(Strict):
    """pyautoattack settings. ``standard`` is the reference; ``custom`` runs ``attacks`` with the
    budgets below (recorded in every metrics file)."""

    version: Literal["standard", "plus", "custom"] = "standard"
    attacks: list[AA_ATTACKS] = Field(default_factory=lambda: ["apgd-ce", "apgd-t", "fab-t", "square"])
    apgd_iterations: PosInt = 100
    target_classes: PosInt = 9
    square_queries: PosInt = 5000
    batch_size: PosInt = 500
    per_member: bool = True


class EpsCurve(Strict):
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


class Evaluation(Strict):
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
