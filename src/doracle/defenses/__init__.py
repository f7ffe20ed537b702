"""Training methods, registered by name in :data:`DEFENSES`.

A defense supplies the per-batch training loss of a classifier (and may bring its own optimizer
wrapper or learning-rate schedule). Defenses may use attacks; the shared training loop
(:mod:`doracle.defenses.training`) adds the double-oracle opponent term. Importing this package
does not import torch: built-ins register when first used.
"""

from doracle.registry import Registry

DEFENSES: Registry = Registry("defense", lazy={
    "erm": "doracle.defenses.methods",
    "pgd_at": "doracle.defenses.methods",
    "fgsm_rs": "doracle.defenses.methods",
    "trades": "doracle.defenses.methods",
    "local_ball": "doracle.defenses.methods",
    "dale": "doracle.defenses.dale",
    "amp": "doracle.defenses.amp",
    "l2l": "doracle.defenses.l2l",
})


def make_defense(name: str, params):
    """Instantiate the registered defense ``name`` with its settings from ``params.defenses``."""
    cls = DEFENSES.get(name)
    spec = params.defenses.get(name)
    return cls(params.threat_model.eps_value, params.threat_model.norm,
               attack=spec.attack if spec else None, options=spec.options if spec else None,
               lr_schedule=(spec.lr_schedule if spec and spec.lr_schedule else None))


__all__ = ["DEFENSES", "make_defense"]
