"""A recipe field holding a regular expression: a pattern that does not compile is a validation
problem at its own YAML path (`filter[2].refusals.extra_patterns[0]: ...`), not a crash mid-build."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator


def _compiles(value: str) -> str:
    try:
        re.compile(value)
    except re.error as e:
        raise ValueError(f"not a valid regular expression ({e})") from None
    return value


Regex = Annotated[str, AfterValidator(_compiles)]


def compile_any(patterns: list[str], *, ignore_case: bool) -> re.Pattern[str]:
    """One alternation of all patterns (one scan per text instead of one per pattern)."""
    flags = re.IGNORECASE if ignore_case else 0
    return re.compile("|".join(f"(?:{p})" for p in patterns), flags)
