"""Registry names in params: every attack, defense, meta-solver, pruner, architecture and the game's
own names, checked against the registries that hold them (the layer where all of them are known;
:mod:`doracle.config` checks the schema only). Importing the registries is cheap (their entries
are lazy), but checking a timm architecture name imports timm.
"""

from __future__ import annotations

from pydantic import ValidationError

from doracle.attacks import ATTACKS
from doracle.config import AttackSpec, Params, format_errors
from doracle.defenses import DEFENSES
from doracle.defenses.options import OPTIONS
from doracle.engine import META_SOLVERS, PRUNERS
from doracle.errors import ConfigError, unknown_name
from doracle.games import game_of
from doracle.models import check_arch


def check_names(params: Params, source: str = "params") -> None:
    """Check every registry name in ``params`` (imports the registries, hence torch); ``source``
    names the params' file(s) in the errors."""
    def attack(spec: AttackSpec, key: str):
        if spec.name not in ATTACKS:
            raise ConfigError(f"{key}.name: {unknown_name('attack', spec.name, ATTACKS.names())}")

    def defense(name: str, key: str):
        if name not in DEFENSES:
            raise ConfigError(f"{key}: {unknown_name('defense', name, DEFENSES.names())}")

    check_arch(params.model.arch)
    defense(params.base.defense, "base.defense")
    defense(params.do.defender.defense, "do.defender.defense")
    for i, m in enumerate(params.baselines.methods):
        defense(m, f"baselines.methods[{i}]")
    defense(params.baselines.matched_defense, "baselines.matched_defense")
    for name, spec in params.defenses.items():
        defense(name, f"defenses.{name}")
        if spec.attack:
            attack(spec.attack, f"defenses.{name}.attack")
        try:
            OPTIONS[name].model_validate(spec.options)
        except ValidationError as err:
            raise ConfigError(format_errors(err, source, prefix=f"defenses.{name}.options.",
                                             model=OPTIONS[name])) from None
    attack(params.do.attacker.attack, "do.attacker.attack")
    for name, spec in params.do.attacker.candidates.items():
        attack(spec, f"do.attacker.candidates.{name}")
    for name, spec in params.evaluation.attacks.items():
        attack(spec, f"evaluation.attacks.{name}")
    if params.evaluation.eps_curve:
        attack(params.evaluation.eps_curve.attack, "evaluation.eps_curve.attack")
    game_of(params).check_names(params)
    if params.do.meta_solver not in META_SOLVERS:
        raise ConfigError(f"do.meta_solver: {unknown_name('meta-solver', params.do.meta_solver, META_SOLVERS.names())}")
    for i, p in enumerate(params.do.pruners):
        if p not in PRUNERS:
            raise ConfigError(f"do.pruners[{i}]: {unknown_name('pruner', p, PRUNERS.names())}")
