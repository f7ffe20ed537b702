"""Per-method options of the defenses (``defenses.<name>.options`` in params.yaml).

Torch-free, so params validate without importing torch. Defaults follow the papers
(../shared/PAPERS.md); docs/methods.md says where we chose.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Opts(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NoOptions(_Opts):
    pass


class TradesOptions(_Opts):
    beta: Annotated[float, Field(ge=0.0)] = 6.0


class DaleOptions(_Opts):
    variant: Literal["gaussian", "laplacian", "kl"] = "gaussian"
    noise: Annotated[float, Field(ge=0.0)] = 0.01       # sigma of the Langevin noise, in units of eps
    primal_dual: bool = True
    nu0: Annotated[float, Field(ge=0.0)] = 1.0           # 0.1 fixed in the paper's non-primal-dual runs
    rho: Annotated[float, Field(ge=0.0)] = 0.1            # clean-loss margin of the constraint
    eta_nu: Annotated[float, Field(ge=0.0)] = 0.001       # dual step size


class AmpOptions(_Opts):
    eps: Annotated[float, Field(gt=0.0)] = 0.5           # L2 radius of the weight perturbation, per tensor
    inner_lr: Annotated[float, Field(gt=0.0)] = 1.0      # zeta
    inner_steps: Annotated[int, Field(ge=1)] = 1         # N


class L2LOptions(_Opts):
    attacker_lr: Annotated[float, Field(gt=0.0)] = 1e-3
    two_step: bool = False
    width: Annotated[int, Field(ge=1)] = 32


class LocalBallOptions(_Opts):
    radius: Annotated[float, Field(gt=0.0, le=1.0)] = 0.25  # local-ball radius, in units of eps
    weight: Annotated[float, Field(ge=0.0)] = 1.0         # weight of the global (consistency) term


OPTIONS: dict[str, type[_Opts]] = {
    "erm": NoOptions, "pgd_at": NoOptions, "fgsm_rs": NoOptions, "trades": TradesOptions,
    "dale": DaleOptions, "amp": AmpOptions, "l2l": L2LOptions, "local_ball": LocalBallOptions,
}
