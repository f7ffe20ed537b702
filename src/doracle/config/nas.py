"""The ``nas`` section (DONAS: best responses that search architectures) and its checks against
the families doracle's models offer (names from :mod:`doracle.registry`)."""

from __future__ import annotations

from typing import Any

from pydantic import (
    Field,
)

from doracle import registry
from doracle.config.base import PosInt, Strict
from doracle.errors import did_you_mean


class Nas(Strict):
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


def check_nas(params) -> list[str]:  # params: config.Params (not imported: params.py imports this module)
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
