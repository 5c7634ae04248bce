"""Numbers a config may not hold, checked on every field of every model (so new fields are covered).

- Non-finite floats (`.inf`, `.nan`, or the strings "inf"/"nan" that pydantic reads as floats) are
  refused anywhere: no setting means anything with them, and they turn into NaN weights or a build
  that never ends.
- An integer of `MAX_COUNT` + 1 (10^9) or more in a field that has no upper bound of its own is
  refused: counts and totals that large never finish on any machine this runs on, and they are almost
  always a typo. Seeds (fields whose name contains "seed") are exempt.

Shared by vlmdata recipes and vlmtrain configs; torch-free.
"""

from __future__ import annotations

import math
from typing import Any

import annotated_types
from pydantic import BaseModel

from vlmdata.config.errors import Problem, yaml_path

MAX_COUNT = 10**9 - 1


class OwnRange:
    """Field metadata: the field's own validator checks its range (e.g. a byte size), so the generic
    count limit does not apply."""


def _bounded(info: Any) -> bool:
    if any(isinstance(m, OwnRange) for m in info.metadata):
        return True
    return any(isinstance(m, (annotated_types.Le, annotated_types.Lt)) for m in info.metadata) or any(
        isinstance(m, annotated_types.Interval) and (m.le is not None or m.lt is not None) for m in info.metadata)


def _non_finite(value: Any) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def raw_problems(data: Any, loc: tuple[Any, ...] = ()) -> list[Problem]:
    """Non-finite floats anywhere in the raw (merged, expanded) YAML."""
    if isinstance(data, dict):
        return [p for k, v in data.items() for p in raw_problems(v, (*loc, k))]
    if isinstance(data, list):
        return [p for i, v in enumerate(data) for p in raw_problems(v, (*loc, i))]
    if _non_finite(data):
        return [Problem(yaml_path(loc), f"{data} is not a finite number; give a finite value")]
    return []


def _value_problems(value: Any, loc: tuple[Any, ...], *, bounded: bool, name: str) -> list[Problem]:
    if isinstance(value, BaseModel):
        return model_problems(value, loc)
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _value_problems(v, (*loc, k), bounded=bounded, name=name)]
    if isinstance(value, (list, tuple)):
        return [p for i, v in enumerate(value) for p in _value_problems(v, (*loc, i), bounded=bounded, name=name)]
    if _non_finite(value):
        return [Problem(yaml_path(loc), f"{value} is not a finite number; give a finite value")]
    if (isinstance(value, int) and not isinstance(value, bool) and not bounded and "seed" not in name
            and abs(value) > MAX_COUNT):
        return [Problem(yaml_path(loc), f"{value} is too large (at most {MAX_COUNT:,}): a count or size like that "
                                        f"never finishes; check for a typo")]
    return []


def model_problems(instance: BaseModel, loc: tuple[Any, ...] = ()) -> list[Problem]:
    """Non-finite floats and unbounded huge integers in a validated model, with YAML paths."""
    problems: list[Problem] = []
    for name, info in type(instance).model_fields.items():
        value = getattr(instance, name, None)
        problems += _value_problems(value, (*loc, info.alias or name), bounded=_bounded(info), name=name)
    return problems


def number_problems(*, raw: Any, instance: BaseModel | None) -> list[Problem]:
    """Both checks, each place reported once."""
    found = raw_problems(raw) + (model_problems(instance) if instance is not None else [])
    seen: set[str] = set()
    out = []
    for p in found:
        if p.path not in seen:
            seen.add(p.path)
            out.append(p)
    return out
