"""Filter: the recipe's `filter:` list → one `FilterStep` per item, in the order written.

    filter:
      - {text_length: {max_chars: 2000}}
      - {image_size: {min_side: 32}}
      - refusals                                   # a bare name = the filter with its defaults
      - {custom: {cls: "mypkg.mod:MyFilter", args: {threshold: 0.5}}}

Each item is a filter name or a one-key mapping name → options. `FilterItem` has one optional field
per filter (extra keys forbidden), so a typo is reported by the shared validator with its YAML path
and a did-you-mean (`filter[1].image_size.min_sid: unknown key 'min_sid'; did you mean 'min_side'?`).
Each filter is its own step, so the manifest's funnel shows what each one removed.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from vlmdata.filters.clip_score import ClipScoreSpec
from vlmdata.filters.custom import CustomSpec
from vlmdata.filters.empty_answer import EmptyAnswerSpec
from vlmdata.filters.image_quality import ImageQualitySpec
from vlmdata.filters.image_size import ImageSizeSpec
from vlmdata.filters.refusals import RefusalsSpec
from vlmdata.filters.regex_blocklist import RegexBlocklistSpec
from vlmdata.filters.text_length import TextLengthSpec
from vlmdata.filters.text_quality import TextQualitySpec
from vlmdata.steps.base import FilterStep


class FilterItem(BaseModel):
    """One entry of `filter:`; exactly one field is set."""

    model_config = ConfigDict(extra="forbid")
    text_length: TextLengthSpec | None = None
    image_size: ImageSizeSpec | None = None
    empty_answer: EmptyAnswerSpec | None = None
    refusals: RefusalsSpec | None = None
    regex_blocklist: RegexBlocklistSpec | None = None
    custom: CustomSpec | None = None
    image_quality: ImageQualitySpec | None = None
    text_quality: TextQualitySpec | None = None
    clip_score: ClipScoreSpec | None = None  # needs the recipe's `embed:` model

    @model_validator(mode="before")
    @classmethod
    def _name_to_mapping(cls, data: Any) -> Any:
        """`refusals` → {refusals: {}}; `{refusals: null}` (YAML `- refusals:`) → {refusals: {}}."""
        if isinstance(data, str):
            return {data: {}}
        if isinstance(data, dict):
            return {k: ({} if v is None else v) for k, v in data.items()}
        if isinstance(data, BaseModel):
            return data
        raise ValueError(f"expected a filter name (e.g. refusals) or a one-key mapping such as "
                         f"{{text_length: {{max_chars: 2000}}}}, got {type(data).__name__} {data!r}")

    @model_validator(mode="after")
    def _exactly_one(self) -> FilterItem:
        chosen = [name for name in type(self).model_fields if getattr(self, name) is not None]
        if len(chosen) != 1:
            raise ValueError(
                f"each item names exactly one filter, got {len(chosen)}"
                + (f" ({', '.join(chosen)}); write them as separate items" if chosen else
                   f" (choose from: {', '.join(type(self).model_fields)})")
            )
        return self

    def spec(self) -> Any:
        return next(getattr(self, n) for n in type(self).model_fields if getattr(self, n) is not None)


def build_filters(items: list[FilterItem]) -> list[FilterStep]:
    """The filter steps of a recipe, in its order (custom classes are imported and built here)."""
    return [item.spec().build() for item in items]
