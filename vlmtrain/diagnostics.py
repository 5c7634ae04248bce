"""Token-length diagnostics before training, and the rows that cannot be trained on at `max_length`.

Why before training: a row longer than `data.max_length` is cut at the right edge. A cut through an
image's tokens leaves the model fewer image tokens than image features (it cannot run), and a cut
before the answer leaves no supervised token (the batch's loss is 0/0 = NaN). Both are found here,
counted per reason, listed in `runs/NAME/rejected_rows.jsonl` and removed, never cut silently.

Rows are tokenised with the processor exactly as the collator does (chat template, image-token
expansion, answer mask), in batches. The model is never run here: a 4-bit model must not see a
forward pass before training, and a length check must not cost a model's compute.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vlmtrain.collate import IGNORE_INDEX, ChatCollator, _image_token_ids
from vlmtrain.data import row_batches

if TYPE_CHECKING:  # pragma: no cover
    import datasets

IMAGE_CUT = "image_cut"  # max_length would cut through (or drop) an image's tokens
NO_ANSWER = "no_answer_tokens"  # no assistant token left within max_length (or no assistant turn at all)
UNRENDERABLE = "chat_template_refuses"  # the model's chat template raises on the row (e.g. Mllama: system + image)
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

    @property
    def kept(self) -> list[int]:
        """Indices of the rows that train (in dataset order)."""
        return [i for i, r in enumerate(self.reasons) if r is None]

    @property
    def rejected(self) -> list[dict[str, Any]]:
        """One record per rejected row: id, task, reason, tokens (what `rejected_rows.jsonl` holds)."""
        return [
            {"id": self.ids[i], "task": self.tasks[i], "reason": r, "tokens": self.lengths[i]}
            for i, r in enumerate(self.reasons)
            if r is not None
        ]

    def counts(self) -> Counter[str]:
        """How many rows each reason rejected."""
        return Counter(r for r in self.reasons if r is not None)

    def table(self) -> str:
        """Rows per task, token-length percentiles, rows over max_length and rows rejected per reason."""
        header = ["task", "rows", *(f"p{p}" for p in PERCENTILES), "max", "img_tok_max", f">{self.max_length}",
                  IMAGE_CUT, NO_ANSWER]
        lines = []
        for task in [*sorted(set(self.tasks)), "all"]:
            idx = [i for i, t in enumerate(self.tasks) if task in ("all", t)]
            lengths = np.array([self.lengths[i] for i in idx])
            reasons = Counter(self.reasons[i] for i in idx)
            pct = [int(np.percentile(lengths, p, method="nearest")) for p in PERCENTILES]
            over = int((lengths > self.max_length).sum())
            images = max((self.image_tokens[i] for i in idx), default=0) if self.image_tokens else 0
            lines.append([task, len(idx), *pct, int(lengths.max()), images, over, reasons[IMAGE_CUT],
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
    """Tokenise every row with the training `collator` (no model), measure it, judge it at its max_length."""
    import torch

    max_length = collator.max_length
    measure = replace(collator, max_length=2**31 - 1)  # the full, uncut length
    image_ids = torch.tensor(_image_token_ids(collator.processor), dtype=torch.long)
    ids, tasks, lengths, reasons, image_tokens = [], [], [], [], []
    for batch_rows in row_batches(dataset, batch_size=batch_size):
        for rows, batch in _collated(measure=measure, rows=batch_rows):
            if batch is None:  # the template refused this row: a reject, not a crash
                ids.append(str(rows[0]["id"]))
                tasks.append(str(rows[0]["task"]))
                lengths.append(0)
                reasons.append(UNRENDERABLE)
                image_tokens.append(0)
                continue
            _measure_rows(rows=rows, batch=batch, max_length=max_length, image_ids=image_ids,
                          out=(ids, tasks, lengths, reasons, image_tokens))
    return Diagnostics(ids=ids, tasks=tasks, lengths=lengths, reasons=reasons, max_length=max_length,
                       image_tokens=image_tokens)


def _collated(*, measure: ChatCollator, rows: list[dict[str, Any]]) -> list[tuple[list[dict[str, Any]], Any]]:
    """[(rows, batch)]: the whole batch, or, when the chat template raises on it, one row at a time with
    None for each row the template refuses."""
    import jinja2

    try:
        return [(rows, measure(rows))]
    except jinja2.TemplateError:
        pass
    out: list[tuple[list[dict[str, Any]], Any]] = []
    for row in rows:
        try:
            out.append(([row], measure([row])))
        except jinja2.TemplateError:
            out.append(([row], None))
    return out


def _measure_rows(*, rows: list[dict[str, Any]], batch: Any, max_length: int, image_ids: Any,
                  out: tuple[list, list, list, list, list]) -> None:
    import torch

    ids, tasks, lengths, reasons, image_tokens = out
    for b, row in enumerate(rows):
        n = int(batch["attention_mask"][b].sum())
        tokens = batch["input_ids"][b, :n]
        kept_labels = batch["labels"][b, : min(n, max_length)]
        if n > max_length and torch.isin(tokens[max_length:], image_ids).any():
            reason: str | None = IMAGE_CUT
        elif not (kept_labels != IGNORE_INDEX).any():
            reason = NO_ANSWER
        else:
            reason = None
        ids.append(str(row["id"]))
        tasks.append(str(row["task"]))
        lengths.append(n)
        reasons.append(reason)
        image_tokens.append(int(torch.isin(tokens, image_ids).sum()))
