"""DONAS: architecture search inside a best-response oracle (Aung et al., arXiv 2410.04764).

A searching player's best response (``nas.enabled``, the player in ``nas.space``) does not train
``params``' fixed architecture. :func:`search` asks an in-process Optuna study (TPE sampler seeded
with the job's seed, in-memory storage) for up to ``nas.candidates`` architectures from the
player's space (the family, then each of its options, by ``suggest_categorical``); the game trains
each for ``nas.short_epochs`` against the same opponent mixture its normal best response plays and
scores it with the game's payoff against that mixture on the payoff split. The best-scoring
candidate (ties: the earlier one) is then trained from scratch with the full budget by the game
and saved as the best response, its sidecar recording the search (:func:`record`).

Budget: exactly ``min(candidates, size of the space)`` short trainings plus one full training. A
configuration the sampler proposes again is not retrained: the study is told its earlier score
and asked for another (at most :data:`MAX_ASKS` asks per candidate).

Game-generic and torch-free: the game passes ``train_and_score(arch, options) -> (score, info)``.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable

from doracle.errors import ConfigError

#: proposals per wanted candidate before the search stops asking (repeats are not retrained)
MAX_ASKS = 50


def space_size(space: dict[str, dict[str, list]]) -> int:
    """How many distinct architectures ``space`` (family -> option -> choices) holds."""
    return sum(len(list(itertools.product(*opts.values()))) for opts in space.values())


def architecture(trial, space: dict[str, dict[str, list]]) -> tuple[str, dict]:
    """``(family, options)`` suggested by an Optuna ``trial`` (options in the space's order)."""
    family = trial.suggest_categorical("arch", list(space))
    options = {opt: trial.suggest_categorical(f"{family}.{opt}", list(choices))
               for opt, choices in space[family].items()}
    return family, options


def search(space: dict[str, dict[str, list]], *, candidates: int, seed: int, direction: str,
           train_and_score: Callable[[str, dict], tuple[float, dict]]) -> dict:
    """Train and score up to ``candidates`` distinct architectures of ``space`` proposed by TPE.

    ``direction`` is ``"maximize"`` or ``"minimize"`` (the player's side of the payoff).
    ``train_and_score(arch, options)`` trains one candidate with the short budget and returns its
    score and a JSON record (epochs, compute, ...). Returns ``{"candidates": [...], "chosen": k,
    "direction": ..., "sampler": ...}``; each candidate ``{"arch", "options", "score", "trial",
    **info}`` in training order; ``chosen`` indexes the best score (ties: the lowest index)."""
    # optuna (about a second to import): only sweeps and DONAS searches load it
    import optuna

    if direction not in ("maximize", "minimize"):
        raise ConfigError(f"direction must be maximize or minimize, got {direction!r}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction=direction, sampler=optuna.samplers.TPESampler(seed=seed),
                                storage=None)
    want = min(candidates, space_size(space))
    done: dict[str, int] = {}  # configuration key -> index in ``tried``
    tried: list[dict] = []
    asks = 0
    while len(tried) < want and asks < MAX_ASKS * want:
        asks += 1
        trial = study.ask()
        arch, options = architecture(trial, space)
        key = json.dumps([arch, options], sort_keys=True)
        if key in done:  # a repeat: the study learns the known score, nothing is trained
            study.tell(trial, tried[done[key]]["score"])
            continue
        score, info = train_and_score(arch, options)
        score = float(score)
        study.tell(trial, score)
        done[key] = len(tried)
        tried.append({"arch": arch, "options": options, "score": score, "trial": trial.number, **info})
    sign = 1.0 if direction == "maximize" else -1.0
    chosen = max(range(len(tried)), key=lambda k: (sign * tried[k]["score"], -k))
    return {"candidates": tried, "chosen": chosen, "direction": direction,
            "sampler": {"name": "TPESampler", "seed": seed, "asks": asks}}


def record(result: dict, full_epochs: int) -> dict:
    """The ``nas`` block of a best response's sidecar: the candidates, the chosen one and the
    number of trainings the job ran (the candidates' short ones + the chosen one's full one)."""
    return {**result, "trainings": len(result["candidates"]) + 1, "full_epochs": full_epochs}


def chosen(result: dict) -> tuple[str, dict]:
    c = result["candidates"][result["chosen"]]
    return c["arch"], dict(c["options"])
