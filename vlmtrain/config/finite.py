"""Non-finite numbers in a training config: found before anything runs, each with its YAML path.

Why: YAML reads `.inf`, `.nan` and `1e999` as floats, and most range checks let them through
(`inf > 0`), so `train.lr: .inf` would validate, train and save an all-NaN adapter with exit 0.
No setting of a training run means infinity or NaN, so every float in the document is checked,
whatever section (and whoever's section) it sits in. Strings such as "inf" given to a float field
are refused by the models themselves (`allow_inf_nan=False` on the config sections).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from vlmdata.config.errors import Problem, yaml_path


def _walk(value: Any, loc: tuple[Any, ...]) -> Iterator[tuple[tuple[Any, ...], float]]:
    if isinstance(value, float) and not math.isfinite(value):
        yield loc, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*loc, key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _walk(item, (*loc, i))


def _spelled(value: float) -> str:
    return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")


def nonfinite_problems(data: Any) -> list[Problem]:
    """One problem per non-finite float anywhere in the loaded YAML (an overflow such as 1e999 is one too)."""
    return [Problem(yaml_path(loc), f"{_spelled(value)} is not a finite number; give a finite value")
            for loc, value in _walk(data, ())]
