"""User filter classes for the bad-input tests (loaded by `filter: [{custom: {cls: bad_steps:...}}]`).

`Boom` raises an exception no step expects on the rows whose question says "boom" (a bug in user code,
or a value nobody thought of); `Slow` makes a build last long enough to be killed in the middle."""

from __future__ import annotations

import time
from typing import Any


class Boom:
    name = "filter.boom"

    def keep(self, row: dict[str, Any]) -> bool:
        if "boom" in str(row.get("fields", {}).get("question", "")):
            return 1 / 0 > 0  # ZeroDivisionError, on this row only
        return True


class Slow:
    name = "filter.slow"

    def __init__(self, seconds: float = 0.05) -> None:
        self.seconds = seconds

    def keep(self, row: dict[str, Any]) -> bool:
        time.sleep(self.seconds)
        return True
