"""Perturbation strategies, registered by name in :data:`ATTACKS`.

An attack maps (mixture, x, y) to x_adv with ||x_adv - x|| <= eps and x_adv in [0, 1]. It attacks
the *expected* loss of the mixture (a single model is a mixture of one) and never changes the
caller's train/eval mode. Attacks never import defenses. Importing this package does not import
torch: the built-in attacks register when first used.
"""

from doracle.registry import Registry

ATTACKS: Registry = Registry("attack", lazy={
    "fgsm": "doracle.attacks.pgd",
    "pgd": "doracle.attacks.pgd",
    "arc": "doracle.attacks.arc",
    "langevin": "doracle.attacks.langevin",
    "l2l": "doracle.attacks.l2l",
})


def run_attack(*args, **kwargs):
    """See :func:`doracle.attacks.base.run_attack`."""
    # torch: the registry's names are read without it
    from doracle.attacks.base import run_attack as _run

    return _run(*args, **kwargs)


__all__ = ["ATTACKS", "run_attack"]
