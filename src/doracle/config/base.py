"""The schema's foundation: the strict base model (extra keys forbidden, plain numbers only, integers
at most MAX_INT), fractions such as ``8/255``, and the number types the sections share."""

from __future__ import annotations

import math
import re
import types
from fractions import Fraction
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    model_validator,
)

DEFAULT_PARAMS = "params.yaml"


def _number_types(annotation) -> set:
    """The plain types an annotation admits (Annotated, Optional and unions unwrapped)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _number_types(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return set().union(*(_number_types(a) for a in get_args(annotation)))
    return {annotation} if isinstance(annotation, type) else set()


#: the largest integer a params value may hold (the seed's range; every count and size is far below)
MAX_INT = 2**32 - 1


class Strict(BaseModel):
    # inf and nan refused in every float (a non-finite lr or eps passes every range check)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _plain_numbers(cls, data):
        """YAML's true / false are 1 / 0 to pydantic's int and float: refused where a number is due.
        An integer beyond :data:`MAX_INT` is refused too: no count, size or step number needs one,
        and torch's int64 overflows (a traceback, deep in a job) where Python's int does not."""
        if isinstance(data, dict):
            for name, field in cls.model_fields.items():
                value = data.get(name)
                kinds = _number_types(field.annotation)
                if isinstance(value, bool) and bool not in kinds and kinds & {int, float}:
                    raise ValueError(f"{name}: a number is due, not the boolean {str(value).lower()}")
                for v in value if isinstance(value, list) else [value]:
                    if isinstance(v, int | float) and not isinstance(v, bool) and abs(v) > MAX_INT and (
                            isinstance(v, int) or int in kinds):
                        raise ValueError(f"{name}: {v} is out of range: doracle's integers (counts, sizes, "
                                         f"steps, seeds) are at most {MAX_INT} (2**32 - 1)")
        return data


def parse_fraction(value: Any) -> Fraction:
    """'8/255' -> Fraction(8, 255); 0.1 -> Fraction('0.1'). Rejects anything else."""
    if isinstance(value, bool):
        raise ValueError("must be a number or a fraction such as 8/255")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number or a fraction such as 8/255, got {value}")
    if isinstance(value, int | float):
        return Fraction(str(value))
    if isinstance(value, str) and re.fullmatch(r"\s*\d+(\.\d*)?\s*(/\s*\d+(\.\d*)?\s*)?", value):
        num, _, den = value.partition("/")
        return Fraction(num.strip()) / (Fraction(den.strip()) if den else 1)
    raise ValueError(f"must be a number or a fraction such as 8/255, got {value!r}")


PosInt = Annotated[int, Field(ge=1)]


Prob = Annotated[float, Field(ge=0.0, le=1.0)]
