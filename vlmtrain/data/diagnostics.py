"""Token-length diagnostics before training, and the rows that cannot be trained on at `max_length`.

Why before training: a row longer than `data.max_length` is cut at the right edge. A cut through an
image's tokens leaves the model fewer image tokens than image features (it cannot run), and a cut
before the answer leaves no supervised token (the batch's loss is 0/0 = NaN). Both are found here,
counted per reason, listed in `runs/NAME/rejected_rows.jsonl` and removed, never cut silently.

Rows the collator cannot take at all (no messages, a conversation that starts with the assistant, an
empty answer, a zero-byte or truncated image, image parts that do not match the images, a row the
template or processor fails on) are rejected the same way, with their reason and detail
(`vlmtrain.data.row_checks`), instead of killing the run.

Rows are tokenised with the processor exactly as the collator does (chat template, image-token
expansion, answer mask), in batches. The model is never run here: a 4-bit model must not see a
forward pass before training, and a length check must not cost a model's compute.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from vlmtrain.data.collate import IGNORE_INDEX, ChatCollator, _image_token_ids
from vlmtrain.data.dataset import raw_batches
from vlmtrain.data.row_checks import COLLATE_ERROR, ROW_REASONS, row_problem

if TYPE_CHECKING:  # pragma: no cover
    import datasets

IMAGE_CUT = "image_cut"  # max_length would cut through (or drop) an image's tokens
NO_ANSWER = "no_answer_tokens"  # no assistant token left within max_length (or no assistant turn at all)
UNRENDERABLE = "chat_template_refuses"  # the model's chat template raises on the row (e.g. Mllama: system + image)
_NO_LENGTH = (*ROW_REASONS, UNRENDERABLE)  # rows never measured: no token length to count
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True, kw_only=True)
class Diagnostics:
    """Per row: id, task, token count (image tokens included) and the reject reason (None = kept)."""

    ids: list[str]
    tasks: list[str]
    lengths: list[int]
    reasons: list[str | None]
    max_length: int
    # image tokens per row after expansion, under the run's processor settings (model.processor)
    image_tokens: list[int] = field(default_factory=list)
    details: list[str | None] | None = None  # per row: what exactly is wrong (None = nothing to add)

    @property
    def kept(self) -> list[int]:
        """Indices of the rows that train (in dataset order)."""
        return [i for i, r in enumerate(self.reasons) if r is None]

    @property
    def rejected(self) -> list[dict[str, Any]]:
        """One record per rejected row: id, task, reason, tokens (what `rejected_rows.jsonl` holds)."""
        details = self.details or [None] * len(self.reasons)
        return [
            {"id": self.ids[i], "task": self.tasks[i], "reason": r, "tokens": self.lengths[i],
             **({"detail": details[i]} if details[i] else {})}
            for i, r in enumerate(self.reasons)
            if r is not None
        ]

    def counts(self) -> Counter[str]:
        """How many rows each reason rejected."""
        return Counter(r for r in self.reasons if r is not None)

    def table(self) -> str:
        """Rows per task, token-length percentiles, rows over max_length and rows rejected per reason."""
        header = ["task", "rows", *(f"p{p}" for p in PERCENTILES), "max", "img_tok_max", "bad_row", f">{self.max_length}",
                  IMAGE_CUT, NO_ANSWER]
        lines = []
        for task in [*sorted(set(self.tasks)), "all"]:
            idx = [i for i, t in enumerate(self.tasks) if task in ("all", t)]
            measured = [self.lengths[i] for i in idx if self.reasons[i] not in _NO_LENGTH]  # bad rows: no length
            lengths = np.array(measured or [0])
            reasons = Counter(self.reasons[i] for i in idx)
            pct = [int(np.percentile(lengths, p, method="nearest")) for p in PERCENTILES]
            over = int((lengths > self.max_length).sum())
            images = max((self.image_tokens[i] for i in idx), default=0) if self.image_tokens else 0
            bad = sum(reasons[r] for r in _NO_LENGTH)
            lines.append([task, len(idx), *pct, int(lengths.max()), images, bad, over, reasons[IMAGE_CUT],
                          reasons[NO_ANSWER]])
        table = [header, *lines]
        widths = [max(len(str(row[c])) for row in table) for c in range(len(header))]
        out = ["  ".join(_cell(v, w, left=c == 0) for c, (v, w) in enumerate(zip(row, widths, strict=True))) for row in table]
        return "\n".join(out)

    def write_rejected(self, *, path: Path) -> None:
        """Write `rejected_rows.jsonl` (an empty file when nothing was rejected, so its absence is never ambiguous)."""
        with Path(path).open("w", encoding="utf-8") as f:
            for record in self.rejected:
                f.write(json.dumps(record) + "\n")


def _cell(value: Any, width: int, *, left: bool) -> str:
    return f"{value!s:<{width}}" if left else f"{value!s:>{width}}"


def diagnose(*, dataset: datasets.Dataset, collator: ChatCollator, batch_size: int = 16) -> Diagnostics:
    """Check every row (`vlmtrain.data.row_checks`), tokenise it with the training `collator` (no model), measure
    it and judge it at its max_length. A batch the processor fails on is retried row by row, so only the
    row at fault is rejected (`collate_error`)."""
    import torch

    max_length = collator.max_length
    measure = replace(collator, max_length=2**31 - 1)  # the full, uncut length
    image_ids = torch.tensor(_image_token_ids(collator.processor), dtype=torch.long)
    ids, tasks, lengths, reasons, details, image_tokens = [], [], [], [], [], []
    for rows in raw_batches(dataset, batch_size=batch_size):
        found = [row_problem(row) for row in rows]
        good = [row for row, problem in zip(rows, found, strict=True) if problem is None]
        measured = iter(_measure(measure, good))
        for row, problem in zip(rows, found, strict=True):
            ids.append(str(row["id"]))
            tasks.append(str(row["task"]))
            if problem is None:
                result = next(measured)
                if isinstance(result, _Refused):
                    problem = (result.reason, result.detail)
            if problem is not None:
                lengths.append(0)
                reasons.append(problem[0])
                details.append(problem[1])
                image_tokens.append(0)
                continue
            tokens, labels = result
            n = len(tokens)
            if n > max_length and torch.isin(tokens[max_length:], image_ids).any():
                reason: str | None = IMAGE_CUT
            elif not (labels[:max_length] != IGNORE_INDEX).any():
                reason = NO_ANSWER
            else:
                reason = None
            lengths.append(n)
            reasons.append(reason)
            details.append(None)
            image_tokens.append(int(torch.isin(tokens, image_ids).sum()))
    return Diagnostics(ids=ids, tasks=tasks, lengths=lengths, reasons=reasons, max_length=max_length, details=details,
                       image_tokens=image_tokens)



class _Refused(NamedTuple):
    """A row the collator fails on by itself: the reason code and what exactly went wrong."""

    reason: str
    detail: str


def _measure(measure: ChatCollator, rows: list[dict[str, Any]]) -> list[Any]:
    """Per row: (token ids, labels) uncut, or the error message when the collator fails on that row alone."""
    if not rows:
        return []
    import jinja2

    try:
        batch = measure(rows)
    except Exception as e:  # noqa: BLE001 - find the row at fault, one by one
        if len(rows) == 1:
            reason = UNRENDERABLE if isinstance(e, jinja2.TemplateError) else COLLATE_ERROR
            return [_Refused(reason=reason, detail=f"{type(e).__name__}: {e}")]
        return [item for row in rows for item in _measure(measure, [row])]
    out = []
    for b in range(len(rows)):
        n = int(batch["attention_mask"][b].sum())
        out.append((batch["input_ids"][b, :n], batch["labels"][b, :n]))
    return out
