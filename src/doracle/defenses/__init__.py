"""Training methods, registered by name in :data:`DEFENSES`.

A defense supplies the per-batch training loss of a classifier. Defenses may use attacks; the
shared training loop (:mod:`doracle.defenses.training`) adds the double-oracle opponent term.
Importing this package does not import torch: built-ins register when first used.
"""

from doracle.registry import Registry

DEFENSES: Registry = Registry("defense", lazy={"erm": "doracle.defenses.methods",
                                               "pgd_at": "doracle.defenses.methods"})


def make_defense(name: str, params):
    """Instantiate the registered defense ``name`` with its options from ``params.defenses``."""
    cls = DEFENSES.get(name)
    spec = params.defenses.get(name)
    return cls(params.threat_model.eps_value, params.threat_model.norm, spec.attack if spec else None)


__all__ = ["DEFENSES", "make_defense"]
