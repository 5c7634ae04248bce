"""Byte sizes written in a recipe ("500MB", "1GiB"), checked at validation with the units the writer reads.

The Arrow writer converts the text with `datasets.utils.py_utils.convert_file_size_to_int`, which
takes a whole number and a unit (KB, MB, GB, TB, PB in powers of 10; KiB ... PiB in powers of 2; a
lowercase "b" means bits). Anything else failed only when the build reached the writer; here it is a
validation problem, and the value is stored in the writer's own spelling.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator

from vlmdata.config.limits import OwnRange

_SIZE = re.compile(r"^\s*(\d+)\s*([KMGTP]i?B)\s*$", re.IGNORECASE)
_POWER = {"K": 1, "M": 2, "G": 3, "T": 4, "P": 5}
MIN_SHARD_BYTES = 1024


def size_bytes(text: str) -> int:
    """Bytes of a size such as "500MB" or "1GiB" (ValueError when it is not one)."""
    m = _SIZE.fullmatch(text)
    if not m:
        raise ValueError(f"'{text}' is not a size: write a whole number and a unit, e.g. 500MB or 1GiB "
                         f"(units: KB MB GB TB PB, KiB MiB GiB TiB PiB)")
    number, unit = int(m.group(1)), m.group(2)
    power = _POWER[unit[0].upper()]
    value = number * (1024**power if unit[1:2].lower() == "i" else 1000**power)
    return value // 8 if unit.endswith("b") and unit[1:2].lower() != "i" else value


def _shard_size(value: Any) -> str | int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"expected a size such as 500MB, got {type(value).__name__}")
    n = value if isinstance(value, int) else size_bytes(value)
    if n < MIN_SHARD_BYTES:
        raise ValueError(f"{value!r} is below {MIN_SHARD_BYTES} bytes: every row would be its own shard")
    return value if isinstance(value, int) else re.sub(r"\s+", "", value)


ShardSize = Annotated[str | int, BeforeValidator(_shard_size), OwnRange()]
