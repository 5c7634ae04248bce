"""Token estimates and prices: what a job will cost before it runs, and what it did cost after.

Estimates are tokenizer-free on purpose (no tiktoken download, works offline): text is counted as
ceil(chars / 4) plus 4 tokens of framing per message, and each attached image by OpenAI's tiling rule
for `detail: high|auto` (85 + 170 per 512-px tile after fitting into 2048 px and the short side into
768 px; 85 for `low`; 765 when the size is unknown). The real counts come back in each response's
`usage` and are what the manifest and `max_cost_usd` use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# USD per million (input, output) tokens, online. The Batch API costs `BATCH_DISCOUNT` of that.
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.00),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5-nano": (0.05, 0.40),
    "o4-mini": (1.10, 4.40),
}
BATCH_DISCOUNT = 0.5
CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD = 4
UNKNOWN_IMAGE_TOKENS = 765
DEFAULT_COMPLETION_TOKENS = 400  # planning guess when the job sets no max_tokens


class Prices(BaseModel):
    """USD per million tokens; overrides the built-in table (`PRICES` above) for this job."""

    model_config = ConfigDict(extra="forbid")
    input_per_mtok: float = Field(ge=0)
    output_per_mtok: float = Field(ge=0)
    batch_discount: float = Field(default=BATCH_DISCOUNT, ge=0, le=1)


@dataclass(frozen=True)
class Price:
    input_per_mtok: float
    output_per_mtok: float
    batch_discount: float = BATCH_DISCOUNT

    def cost(self, *, prompt_tokens: int, completion_tokens: int, batch: bool) -> float:
        usd = (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6
        return usd * self.batch_discount if batch else usd


def price_for(model: str, override: Prices | None) -> Price | None:
    """The recipe's `prices`, else the table's entry for the model (dated snapshots match their base)."""
    if override is not None:
        return Price(override.input_per_mtok, override.output_per_mtok, override.batch_discount)
    name = model.split("/")[-1]
    for key in sorted(PRICES, key=len, reverse=True):
        if name == key or name.startswith(f"{key}-20"):
            return Price(*PRICES[key])
    return None


def image_tokens(size: tuple[int, int] | None, detail: str) -> int:
    if detail == "low":
        return 85
    if size is None:
        return UNKNOWN_IMAGE_TOKENS
    w, h = size
    scale = min(1.0, 2048 / max(w, h))
    w, h = w * scale, h * scale
    scale = min(1.0, 768 / min(w, h))
    w, h = w * scale, h * scale
    return 85 + 170 * math.ceil(w / 512) * math.ceil(h / 512)


def estimate_prompt_tokens(messages: list[dict[str, Any]], *, image_sizes: list[tuple[int, int] | None],
                           detail: str) -> int:
    """Tokens of an API `messages` list; image parts are costed from `image_sizes` in order."""
    chars, images, n = 0, 0, 0
    for m in messages:
        n += 1
        content = m["content"]
        if isinstance(content, str):
            chars += len(content)
            continue
        for part in content:
            if part.get("type") == "text":
                chars += len(part["text"])
            else:
                images += 1
    sizes = list(image_sizes) + [None] * max(0, images - len(image_sizes))
    return math.ceil(chars / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD * n + sum(image_tokens(s, detail) for s in sizes[:images])


@dataclass
class Ledger:
    """Running totals of one job: requests, tokens and dollars, split into new and cached."""

    price: Price | None
    batch: bool
    requests_sent: int = 0
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    budget_hit: bool = False
    failures: dict[str, int] = field(default_factory=dict)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        if self.price is None:
            return 0.0
        return self.price.cost(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, batch=self.batch)

    def add(self, *, prompt_tokens: int, completion_tokens: int, cached: bool) -> float:
        usd = self.cost(prompt_tokens, completion_tokens)
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cost_usd += usd
        if cached:
            self.cached += 1
        else:
            self.requests_sent += 1
        return usd

    def to_json(self) -> dict[str, Any]:
        return {"requests_sent": self.requests_sent, "cached": self.cached, "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "cost_usd": round(self.cost_usd, 6),
                "priced": self.price is not None, "budget_exhausted": self.budget_hit,
                "failures": dict(sorted(self.failures.items()))}
