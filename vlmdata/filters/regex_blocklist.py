"""`regex_blocklist`: drop rows whose user or assistant text matches any of your patterns.

For what only you know is junk: boilerplate of a scraped source, placeholder answers, banned terms.
The reason names the role whose text matched, so the funnel tells prompts from answers.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from vlmdata.filters.patterns import Regex, compile_any
from vlmdata.filters.turns import role_text
from vlmdata.steps.base import FilterStep, Row

BlockRole = Literal["user", "assistant"]


class RegexBlocklistFilter(FilterStep):
    name: ClassVar[str] = "filter.regex_blocklist"

    def __init__(self, *, patterns: list[str], fields: list[BlockRole] | tuple[BlockRole, ...] = ("user", "assistant"),
                 ignore_case: bool = True) -> None:
        if not patterns:
            raise ValueError("patterns: give at least one pattern")
        bad = [f for f in fields if f not in ("user", "assistant")]
        if bad or not fields:
            raise ValueError(f"fields: choose from user, assistant (got {list(fields)})")
        self.pattern = compile_any(list(patterns), ignore_case=ignore_case)
        self.fields = tuple(fields)

    def keep(self, row: Row) -> bool | str:
        for role in self.fields:
            if self.pattern.search(role_text(row.get("messages"), role)):
                return f"blocked_{role}_text"
        return True


class RegexBlocklistSpec(BaseModel):
    """`{regex_blocklist: {patterns: ["lorem ipsum", "^N/A$"], fields: [assistant]}}`."""

    model_config = ConfigDict(extra="forbid")
    patterns: list[Regex] = Field(min_length=1)
    fields: list[BlockRole] = Field(default_factory=lambda: ["user", "assistant"], min_length=1)
    ignore_case: bool = True

    def build(self) -> RegexBlocklistFilter:
        return RegexBlocklistFilter(patterns=self.patterns, fields=self.fields, ignore_case=self.ignore_case)
