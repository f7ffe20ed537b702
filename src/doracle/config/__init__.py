"""params.yaml: one schema (pydantic), one loader, used by the Snakefile at load time and by every
CLI subcommand. An unknown key, a wrong type or an out-of-range value fails before any work is
done, with a message naming the key (``do.defender.opponent_weight: ...``).

Registry names (attacks, defenses, meta-solvers, pruners, models) are checked by
:func:`doracle.games.checks.check_names`, where the registries are known; this package is the
lowest layer (it imports only :mod:`doracle.errors` and :mod:`doracle.registry`), and the light
jobs (LP solve, pruning) validate the schema only.

One module per concept: :mod:`.base` (the strict model, fractions, number types), each game's
sections (:mod:`.at`, :mod:`.gan`), :mod:`.nas`, :mod:`.resources`, the whole file (:mod:`.params`)
and reading it (:mod:`.load`: YAML, validation messages, partial files, overrides). Everything
is re-exported here: ``from doracle.config import Params`` as before.
"""

from __future__ import annotations

from doracle.config.at import (  # noqa: F401
    AA_ATTACKS,
    CACHED_ONLY,
    MATCHED_BUDGETS,
    Attacker,
    AttackSpec,
    AutoAttackCfg,
    Base,
    Baselines,
    Defender,
    DefenseSpec,
    EpsCurve,
    Evaluation,
    ModelCfg,
    ThreatModel,
)
from doracle.config.base import (  # noqa: F401
    DEFAULT_PARAMS,
    MAX_INT,
    PosInt,
    Prob,
    Strict,
    parse_fraction,
)
from doracle.config.gan import (  # noqa: F401
    Gan,
    GanMetrics,
    GanReference,
)
from doracle.config.load import (  # noqa: F401
    GAME_ONLY_SECTIONS,
    MAX_ALIASES,
    base_of,
    complete_keys,
    default_experiments,
    dotted_tree,
    format_errors,
    load,
    load_complete,
    load_resolved,
    load_yaml,
    merge,
    missing_keys,
    read_raw,
    resolve,
    set_key,
    validate,
    yaml_error,
)
from doracle.config.nas import (  # noqa: F401
    Nas,
    check_nas,
    nas_families,
)
from doracle.config.params import (  # noqa: F401
    AUGMENTATION_STANDARD,
    DATASET_SIZES,
    DO,
    Data,
    Params,
    Training,
    payoff_resolution,
    payoff_statement,
    resolvable_tolerance,
    warnings,
)
from doracle.config.resources import (  # noqa: F401
    GRES,
    JobResources,
    Resources,
)
