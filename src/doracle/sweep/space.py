"""A sweep's space file: the study, the base experiment, the metric, the sampler, the storage, the
pruner and the distributions of dotted params keys. One schema (pydantic, unknown keys refused);
:func:`load_space` also checks every distribution against the base params (each bound and each
choice set into the base file must validate), so a bad space fails before any trial runs, naming
the key. Torch-free except for the registry-name check (:func:`doracle.games.checks.check_names`).
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from doracle import config as cfg
from doracle.config import Params, Strict, format_errors
from doracle.errors import ConfigError

# A study name is part of the trials' experiment names, <base experiment>-<study>-tNNNN: without a
# "-" in it, no two (base, study) pairs can name the same trials.
NAME = r"^[A-Za-z0-9][A-Za-z0-9_.]*$"
#: the most points a grid sampler's grid may hold (each is a whole pipeline run)
MAX_GRID = 100_000

#: the metric ``auto`` stands for, per game: (dotted path into metrics.json, direction)
AUTO_METRICS = {
    "at": ("models.do_mixture.robust_accuracy.worst_case", "maximize"),
    "gan": ("models.do_mixture.fid", "minimize"),
}
#: the direction in which each game's DO value (the row player's payoff) is better for the model
#: the metric scores: AT's row player is the defender (robust accuracy: higher is better); the
#: GAN's row player is the discriminator, so a lower V(G, D) is better for the generator.
GAME_VALUE_DIRECTION = {"at": "maximize", "gan": "minimize"}
FIXED_KEYS = ("experiment", "game")  # set per trial / the base experiment's; never sampled


class _Range(Strict):
    """A numeric range: low <= high; log needs low > 0 and no step."""

    @model_validator(mode="after")
    def _range(self):
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) > high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log needs low > 0, got low {self.low}")
        if self.log and self.step not in (None, 1 if self.type == "int" else None):
            raise ValueError("log and step cannot be combined")
        return self

    def values_to_check(self) -> list:
        """The bounds, and for a float range a value between them (a float distribution on an
        integer key validates at integer bounds but fails on what it samples between them)."""
        if self.type != "float" or self.low == self.high:
            return [self.low, self.high]
        if self.step:  # a point of its grid
            return [self.low, self.low + self.step * (int((self.high - self.low) / self.step) // 2), self.high]
        mid = (self.low * self.high) ** 0.5 if self.log else (self.low + self.high) / 2
        if mid == int(mid):  # what a continuous distribution samples is fractional
            mid += (self.high - self.low) / 7
        return [self.low, mid, self.high]


class FloatDist(_Range):
    type: Literal["float"]
    low: float
    high: float
    log: bool = False
    step: Annotated[float, Field(gt=0)] | None = None


class IntDist(_Range):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: Annotated[int, Field(ge=1)] = 1


class CategoricalDist(Strict):
    type: Literal["categorical"]
    choices: list[str | bool | int | float | None]

    @model_validator(mode="after")
    def _choices(self):
        if not self.choices:
            raise ValueError("choices is empty")
        if len({json.dumps(c) for c in self.choices}) < len(self.choices):
            raise ValueError(f"choices repeat a value: {self.choices}")
        return self

    def values_to_check(self) -> list:
        return list(self.choices)


Dist = Annotated[FloatDist | IntDist | CategoricalDist, Field(discriminator="type")]


class Pruner(Strict):
    name: Literal["none", "median", "threshold"] = "median"
    n_startup_trials: Annotated[int, Field(ge=0)] = 2  # median: trials finished before any pruning
    n_warmup_steps: Annotated[int, Field(ge=0)] = 0     # median, threshold: DO iterations never pruned
    lower: float | None = None                          # threshold: prune when the value is below...
    upper: float | None = None                          # ...or above (values as reported: see `intermediate`)

    @model_validator(mode="after")
    def _bounds(self):
        if self.name == "threshold" and self.lower is None and self.upper is None:
            raise ValueError("threshold needs lower or upper")
        if self.name != "threshold" and (self.lower is not None or self.upper is not None):
            raise ValueError(f"lower / upper belong to the threshold pruner, not {self.name!r}")
        return self


class Space(Strict):
    study: Annotated[str, Field(pattern=NAME, max_length=60)]
    base: str = cfg.DEFAULT_PARAMS    # the complete params file the trials start from (project-relative)
    metric: str = "auto"              # auto, or a dotted path into the trial's metrics.json
    direction: Literal["auto", "maximize", "minimize"] = "auto"
    trials: Annotated[int, Field(ge=1, le=MAX_GRID)] = 10   # finished trials of the whole study, every worker together
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    storage: str | None = None        # null: a journal file results/sweeps/<study>/journal.log; or an RDB URL
    pruner: Pruner = Field(default_factory=Pruner)
    intermediate: Literal["game_value", "do_gap"] = "game_value"
    # another host's trial without a heartbeat this long is dead (workers beat every 60 s: >= 3 beats)
    stale_after_s: Annotated[int, Field(ge=180, le=7 * 24 * 3600)] = 900
    fixed: dict[str, Any] = Field(default_factory=dict)  # dotted keys set in every trial (e.g. baselines.methods: [])
    params: dict[str, Dist]

    @field_validator("study", mode="before")
    @classmethod
    def _study(cls, v):
        if isinstance(v, str) and "-" in v:
            raise ValueError(f"{v!r} contains '-': the trials' experiments are <base experiment>-<study>-tNNNN, so "
                             "a '-' would let two (base, study) pairs name the same trials; use _ or .")
        return v

    @model_validator(mode="after")
    def _params(self):
        if not self.params:
            raise ValueError("params is empty: name at least one dotted params key to sweep")
        for key in self.fixed:
            if key.split(".")[0] in FIXED_KEYS:
                raise ValueError(f"fixed.{key}: cannot be set (the sweep sets it per trial)")
            if key in self.params:
                raise ValueError(f"{key}: both fixed and swept")
        for key, d in self.params.items():
            if key.split(".")[0] in FIXED_KEYS:
                raise ValueError(f"{key}: cannot be swept (the sweep sets it per trial)")
            if self.sampler == "grid" and d.type == "float" and d.step is None:
                raise ValueError(f"{key}: the grid sampler needs a step for a float distribution")
        if self.sampler == "grid":  # counted before any list is built: a tiny step must not exhaust memory
            size = 1
            for key, d in self.params.items():
                n = len(d.choices) if d.type == "categorical" else int((d.high - d.low) / d.step) + 1
                size *= n
                if size > MAX_GRID:
                    raise ValueError(f"{key}: the grid would hold more than {MAX_GRID:,} points (each a pipeline "
                                     f"run; this key alone gives {n:,}): use a larger step, or the tpe or random "
                                     "sampler")
        if self.storage is not None and not re.match(r"^[a-z][a-z0-9+]*://", self.storage):
            raise ValueError(f"storage: {self.storage!r} is not a database URL (e.g. sqlite:///sweep.db, "
                             "postgresql://host/db); null keeps the journal file results/sweeps/<study>/journal.log")
        if self.direction == "auto" and self.metric != "auto":
            raise ValueError(f"metric {self.metric!r}: give direction (maximize | minimize)")
        return self


class SweepSpec:
    """A validated space with everything resolved against its base params: metric path,
    direction, storage URL or journal path, the base params (raw and validated)."""

    def __init__(self, space: Space, source: str, base_raw: dict, base: Params) -> None:
        self.space, self.source, self.base_raw, self.base = space, source, base_raw, base
        self.dir = Path("results/sweeps") / space.study
        if space.metric == "auto":
            self.metric, self.direction = AUTO_METRICS[base.game]
        else:
            self.metric, self.direction = space.metric, space.direction
        self.journal = None if space.storage else self.dir / "journal.log"

    @property
    def value_sign(self) -> float:
        """+1 when the game value already agrees with the direction, else -1 (see `intermediate`)."""
        return 1.0 if GAME_VALUE_DIRECTION[self.base.game] == self.direction else -1.0

    def experiment(self, number: int) -> str:
        return f"{self.base.experiment}-{self.space.study}-t{number:04d}"

    def trial_raw(self, values: dict[str, Any], experiment: str) -> dict:
        raw = self.base_raw
        for key, v in {**self.space.fixed, **values}.items():
            raw = cfg.set_key(raw, key, v)
        return {**raw, "experiment": experiment}

    def fingerprint(self) -> str:
        """What a resumed study must share with the one it resumes (all but ``trials``)."""
        doc = {"space": self.space.model_dump(mode="json", exclude={"trials"}), "base": self.base_raw}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def grid(self) -> dict[str, list]:
        out = {}
        for key, d in self.space.params.items():
            if d.type == "categorical":
                out[key] = list(d.choices)
            else:
                n = int(round((d.high - d.low) / d.step)) + 1 if d.step else 0
                vals = [d.low + i * d.step for i in range(n)]
                out[key] = [v for v in vals if v <= d.high + 1e-12]
        return out


def load_space(path: str | Path, *, names: bool = True) -> SweepSpec:
    """Read and check a space file; every error names the offending key (ConfigError)."""
    p = Path(path)
    raw = cfg.read_raw(p, "space file")
    try:
        space = Space.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(format_errors(err, str(p), model=Space).replace("invalid params", "invalid space file")) from None
    # a partial base completes as the workflow completes it: the trials' files are then complete
    base, base_raw, _, _ = cfg.load_resolved(space.base)
    if names:
        from doracle.games.checks import check_names  # imports the registries: only when checking

        check_names(base)
    if space.metric == "auto" and base.game not in AUTO_METRICS:
        raise ConfigError(f"{p}: metric: no automatic metric for game {base.game!r}; name a dotted path "
                          "into metrics.json and a direction")
    spec = SweepSpec(space, str(p), base_raw, base)
    if space.fixed:
        try:
            cfg.validate(spec.trial_raw({}, spec.experiment(0)), f"{p}: fixed")
        except ConfigError as exc:
            raise ConfigError(str(exc)) from None
    if "sweeps" in (base.experiment, spec.experiment(0)):
        raise ConfigError(f"{space.base}: experiment 'sweeps' would share results/sweeps/ with the sweeps")
    for key, d in space.params.items():
        for v in d.values_to_check():
            trial = spec.trial_raw({key: v}, spec.experiment(0))
            try:
                params = cfg.validate(trial, f"{p}: params.{key} = {v!r}")
                if names:
                    check_names(params)
            except ConfigError as exc:
                msg = str(exc)
                if not msg.startswith(f"{p}:"):
                    msg = f"{p}: params.{key} = {v!r}: {msg}"
                raise ConfigError(msg) from None
    return spec
