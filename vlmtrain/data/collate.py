"""Turning vlmdata rows into model batches where only the assistant's answers are supervised.

How the mask is found, robustly and for any chat template:
1. Render the whole conversation with the processor's chat template (text, no tokens).
2. For each assistant turn i, render the turns before it plus the generation prompt, and the turns up
   to and including it. Both must be prefixes of the whole text; the characters between them are
   exactly what the model must produce at inference time: the answer and its end-of-turn token.
3. Tokenise the whole batch once through the processor (which expands image placeholders into image
   tokens and returns the pixel values), ask the tokenizer for character offsets and the processor for
   where it expanded placeholders, and label a token iff it starts inside an answer span.
Nothing searches for token strings, so the mask is right even when an answer contains role-like text.

Per-family differences come from `vlmtrain.models.families` (never from class names): whether the processor
takes images per row, and whether the family has a chat template at all. PaliGemma has none: its
rows become `text` (the question, after the image tokens) and `suffix` (the answer), and the
processor's `token_type_ids` mark the suffix + EOS, which are the supervised tokens.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vlmdata.schema import image_count
from vlmtrain.data.chat import conversation
from vlmtrain.data.prompting import batch_images, fill_image_rows, prefix_prompt
from vlmtrain.models.families import Family

if TYPE_CHECKING:  # pragma: no cover
    import torch
    from PIL import Image

IGNORE_INDEX = -100
_TEXT_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids")
_DROP_KEYS = ("offset_mapping", "text_replacement_offsets")


def assistant_spans(*, processor: Any, messages: list[dict[str, Any]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the [start, end) character span of each assistant answer.

    See `vlmtrain.data.chat.conversation`: a span is the answer plus the token that stops generation (the
    template's end-of-turn, or EOS written after the answer); TemplateError for a template that cannot
    say where answers are.
    """
    return conversation(processor=processor, messages=messages)


def _shift(position: int, replacements: list[dict[str, Any]]) -> int:
    """Map a character position in the rendered text to the text after placeholder expansion."""
    shift = 0
    for rep in replacements:
        (start, end), (new_start, new_end) = rep["span"], rep["new_span"]
        if end <= position:
            shift += (new_end - new_start) - (end - start)
    return position + shift


def _to_pil(image: Any) -> Image.Image:
    """A datasets Image value (decoded PIL, or {'bytes', 'path'} when decoding is off) as RGB PIL."""
    from PIL import Image

    if isinstance(image, dict):
        image = Image.open(io.BytesIO(image["bytes"])) if image.get("bytes") else Image.open(image["path"])
    return image.convert("RGB")


def _image_token_ids(processor: Any) -> list[int]:
    """Every token id that stands for image content after expansion, placeholders and wrappers included.

    Why all of them: Gemma 3's `processor.image_token` is the placeholder `<start_of_image>`, while the
    256 tokens it expands to are `<image_soft_token>` (`processor.image_token_id`); counting the
    placeholder alone let a cut through 157 of 256 image tokens pass unseen. Wrappers (begin/end of
    image, row breaks) count too: a cut between them also leaves a broken image.
    """
    tok = processor.tokenizer
    names = [*(getattr(processor, "all_special_multimodal_tokens", None) or [])]
    for holder in (processor, tok):
        for attr in _IMAGE_ATTRS:
            value = getattr(holder, attr, None)
            if isinstance(value, str):
                names.append(value)
    ids = {tok.convert_tokens_to_ids(t) for t in names if t}
    for holder in (processor, tok):
        for attr in _IMAGE_ID_ATTRS:
            value = getattr(holder, attr, None)
            if isinstance(value, int):
                ids.add(value)
    return sorted(i for i in ids if isinstance(i, int) and i != tok.unk_token_id and i >= 0)


# attributes under which processors and tokenizers of the supported families name their image tokens
_IMAGE_ATTRS = ("image_token", "boi_token", "eoi_token", "image_start_token", "image_end_token",
                "image_break_token", "fake_image_token", "global_image_token",
                "start_image_token", "end_image_token", "vision_start_token", "vision_end_token",
                "start_of_img_token", "end_of_img_token", "img_patch_token", "img_line_break_token",
                "video_token", "image_token_str", "img_context_token", "start_image_token_str")
_IMAGE_ID_ATTRS = ("image_token_id", "image_token_index", "boi_token_id", "eoi_token_id", "video_token_id",
                   "image_break_token_id", "image_end_token_id", "image_start_token_id", "img_patch_token_id")


@dataclass(kw_only=True)
class ChatCollator:
    """Batch vlmdata rows (`messages`, `images`) for a causal VLM; loss only on assistant answers.

    Returns the processor's tensors plus `labels` (B, L): token ids on answer tokens (and each
    answer's end-of-turn token), -100 on system/user text, image tokens and padding. Sequences are
    right-padded and cut to `max_length`; a cut that would split an image's tokens raises, naming
    `data.max_length`, because the model cannot run on a partial image.
    """

    processor: Any
    max_length: int
    family: Family | None = None  # None: chat template, one flat image list (LLaVA-style)
    carry_tasks: bool = False  # add `tasks` to the batch, for per-task losses (vlmtrain.training.multitask)

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        per_row = []
        for row in rows:
            n_parts, n_images = image_count(row["messages"]), len(row["images"])
            if n_parts != n_images:
                raise ValueError(f"row {row.get('id')}: {n_parts} image part(s) but {n_images} image(s)")
            per_row.append([_to_pil(image) for image in row["images"]])

        images = batch_images(family=self.family, per_row=per_row)
        if self.family is not None and self.family.prompt == "prefix_suffix":
            batch = self._prefix_suffix(rows, images=images)
        else:
            batch = fill_image_rows(batch=self._chat(rows, images=images), per_row=per_row)
        if self.carry_tasks:  # each row's task (a list of B strings), popped before the forward pass
            batch["tasks"] = [str(row["task"]) for row in rows]
        return batch

    def _prefix_suffix(self, rows: list[dict[str, Any]], *, images: Any) -> dict[str, torch.Tensor]:
        """PaliGemma-style: one question, one answer per row; the processor labels the suffix + EOS."""
        import torch

        prefixes, suffixes = [], []
        for row in rows:
            roles = [turn["role"] for turn in row["messages"] if turn["role"] != "system"]
            if roles != ["user", "assistant"]:
                raise ValueError(
                    f"row {row.get('id')}: a prefix/suffix model (no chat template) trains on one question and "
                    f"one answer; this row has turns {roles}"
                )
            prefixes.append(prefix_prompt(processor=self.processor, messages=row["messages"][:-1]))
            suffixes.append("".join(p.get("text") or "" for p in row["messages"][-1]["content"]))
        batch = self.processor(
            text=prefixes, images=images, suffix=suffixes, return_tensors="pt",
            padding=True, padding_side="right",
        )
        out = dict(batch)
        out["labels"] = torch.as_tensor(out["labels"]).masked_fill(out["attention_mask"] == 0, IGNORE_INDEX)
        image_ids = torch.tensor(_image_token_ids(self.processor), dtype=out["input_ids"].dtype)
        return self._truncate(out, image_ids=image_ids, rows=rows)

    def _chat(self, rows: list[dict[str, Any]], *, images: Any) -> dict[str, torch.Tensor]:
        import torch

        texts, spans = [], []
        for row in rows:
            text, row_spans = assistant_spans(processor=self.processor, messages=row["messages"])
            texts.append(text)
            spans.append(row_spans)
        batch = self.processor(
            text=texts,
            images=images,
            return_tensors="pt",
            padding=True,
            padding_side="right",
            add_special_tokens=False,  # the chat template already wrote BOS
            return_offsets_mapping=True,
            return_text_replacement_offsets=True,
        )
        offsets = batch["offset_mapping"].tolist()
        replacements = batch.get("text_replacement_offsets") or [[] for _ in rows]
        input_ids, attention = batch["input_ids"], batch["attention_mask"]
        labels = torch.full_like(input_ids, IGNORE_INDEX)
        for b, row_spans in enumerate(spans):
            shifted = [(_shift(s, replacements[b]), _shift(e, replacements[b])) for s, e in row_spans]
            for t, (start, end) in enumerate(offsets[b]):
                if attention[b, t] and end > start and any(s <= start < e for s, e in shifted):
                    labels[b, t] = input_ids[b, t]
        image_ids = torch.tensor(_image_token_ids(self.processor), dtype=input_ids.dtype)
        labels[torch.isin(input_ids, image_ids)] = IGNORE_INDEX
        out = {k: v for k, v in batch.items() if k not in _DROP_KEYS}
        out["labels"] = labels
        return self._truncate(out, image_ids=image_ids, rows=rows)

    def _truncate(
        self, batch: dict[str, Any], *, image_ids: torch.Tensor, rows: list[dict[str, Any]]
    ) -> dict[str, Any]:
        import torch

        if batch["input_ids"].shape[1] <= self.max_length:
            return batch
        cut = batch["input_ids"][:, self.max_length :]
        for b in torch.isin(cut, image_ids).any(dim=1).nonzero().flatten().tolist():
            raise ValueError(
                f"row {rows[b].get('id')}: data.max_length={self.max_length} would cut image tokens "
                f"(the row has {int(batch['attention_mask'][b].sum())} tokens); raise data.max_length"
            )
        for key in (*_TEXT_KEYS, "labels"):
            if key in batch:
                batch[key] = batch[key][:, : self.max_length]
        return batch
