"""`clip_score`: drop rows whose image and text disagree, by the cosine of their embeddings.

    filter:
      - {clip_score: {min: 0.25, text: user}}     # DataComp's ViT-B/32 baseline is 0.25-0.28

`text` picks the turn compared with the first image: `user` (the instruction/caption prompt) or
`assistant` (the answer; right for caption data). The vectors come from the `embed` stage (the
recipe's `embed:` model), so this filter itself is numpy only. Rows without images are not scored.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from vlmdata.filters.scored import ScoredFilter
from vlmdata.steps.base import Row


class ClipScoreFilter(ScoredFilter):
    name: ClassVar[str] = "filter.clip_score"

    def __init__(self, *, min_score: float | None, max_score: float | None, text: str) -> None:
        self.text = text
        self.checks = ([("clip_score", "min", min_score, "clip_score_low")] if min_score is not None else []) + \
                      ([("clip_score", "max", max_score, "clip_score_high")] if max_score is not None else [])

    def scores(self, row: Row) -> dict[str, float] | None:
        images = row.get("image_embeddings")
        if images is None or not len(images):
            return None
        import numpy as np  # here: the recipe (and `vlmdata validate`) imports this module

        t = row["text_embeddings"][self.text].astype(np.float32)
        return {"clip_score": float(images[0].astype(np.float32) @ t)}


class ClipScoreSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    min: float | None = Field(default=0.25, ge=-1.0, le=1.0)
    max: float | None = Field(default=None, ge=-1.0, le=1.0)
    text: Literal["user", "assistant"] = "user"

    def build(self) -> ClipScoreFilter:
        return ClipScoreFilter(min_score=self.min, max_score=self.max, text=self.text)
