"""The prompt a model answers from at inference, rendered exactly as it was trained (see `vlmtrain.data.collate`).

Why one place: `vlmtrain eval`, `vlmtrain predict`, evaluation during training and the continual
runner all generate, and each must ask the model the way the collator taught it; a prompt that differs
by one token (a doubled BOS, a missing separator) costs accuracy silently.

- chat families: the text that preceded the answer in training (`vlmtrain.data.chat.prompt`: the chat
  template with the generation prompt, BOS and EOS repairs included), so the processor must not add
  special tokens again.
- images go per row to processors that take them so (`batch_images`), at any batch size.
- prefix/suffix families (PaliGemma, no chat template): the image tokens, then the question's text; the
  processor inserts BOS after the images and the "\\n" that ends the prefix, as it does in training.
"""

from __future__ import annotations

import contextlib
from typing import Any

from vlmdata.schema import image_count
from vlmtrain.data.chat import prompt
from vlmtrain.models.families import Family, family_of


def question_text(messages: list[dict[str, Any]]) -> str:
    """The text of every non-assistant turn, joined: a prefix/suffix model's whole question."""
    parts = [p for turn in messages if turn["role"] != "assistant" for p in turn["content"]]
    return "".join(p.get("text") or "" for p in parts if p["type"] == "text")


def prefix_prompt(*, processor: Any, messages: list[dict[str, Any]]) -> str:
    """A prefix/suffix model's prompt: one image token per image part, then the question."""
    return processor.image_token * image_count(messages) + question_text(messages)


def family_of_model(model: Any) -> Family:
    """The family of a loaded model (a peft wrapper forwards `config` to the model it wraps)."""
    return family_of(model.config.model_type)


def batch_images(*, family: Family | None, per_row: list[list[Any]]) -> Any:
    """The `images` argument of a processor call for these rows: one list per row where the family's
    processor takes them so (Idefics3, SmolVLM, Gemma 3, Mllama), else one flat list; None when no row
    has an image.

    Why per row: a nested-images processor given one flat list cannot tell which image belongs to which
    row and fails (or mis-assigns) at batch size > 1. The collator and inference both call this.
    """
    if not any(per_row):
        return None
    if family is not None and family.nested_images:
        return [list(images) for images in per_row]
    return [image for images in per_row for image in images]


_PER_IMAGE_ROW_KEYS = ("aspect_ratio_ids", "aspect_ratio_mask")  # Mllama: one row per sample that has images


def fill_image_rows(*, batch: Any, per_row: list[list[Any]]) -> Any:
    """Give text-only rows of a mixed batch their row in per-sample image tensors the processor left out.

    Why: MllamaProcessor returns `aspect_ratio_ids`/`_mask` for the samples that have images only, so a
    batch mixing text-only and image rows fails in the model's reshape. The missing rows get the values
    the processor itself uses for padding image slots (id 1, mask 1); their pixels are zeros and their
    cross-attention mask is zero, so nothing attends to them.
    """
    import torch

    have = [i for i, images in enumerate(per_row) if images]
    if not have or len(have) == len(per_row):
        return batch
    for key in _PER_IMAGE_ROW_KEYS:
        value = batch.get(key) if hasattr(batch, "get") else None
        if isinstance(value, torch.Tensor) and value.shape[0] == len(have):
            full = torch.ones((len(per_row), *value.shape[1:]), dtype=value.dtype)
            full[have] = value
            batch[key] = full
    return batch


def prompt_inputs(
    *, processor: Any, family: Family, prompts: list[list[dict[str, Any]]], images: list[list[Any]]
) -> Any:
    """Processor outputs (PyTorch tensors, left-padded so every prompt ends where generation starts) for
    `prompts` (each the turns before the answer) and `images` (one list per prompt, in order)."""
    if len(images) != len(prompts):
        raise ValueError(f"{len(prompts)} prompt(s) but {len(images)} image list(s): give one list per prompt")
    kwargs: dict[str, Any] = {"images": batch_images(family=family, per_row=images), "return_tensors": "pt",
                              "padding": True, "padding_side": "left"}
    if family.prompt == "prefix_suffix":
        texts = [prefix_prompt(processor=processor, messages=p) for p in prompts]
        return processor(text=texts, **kwargs)
    texts = [prompt(processor=processor, messages=p) for p in prompts]
    return fill_image_rows(batch=processor(text=texts, add_special_tokens=False, **kwargs), per_row=images)


def inference_autocast(model: Any) -> contextlib.AbstractContextManager:
    """Autocast to the model's low precision when its weights mix fp32 with bf16/fp16, else a no-op.

    Why: QLoRA under bf16 autocast trains a full component (say the projector) in fp32 over a bf16 model;
    the Trainer's autocast covers training, but generation outside it would feed that fp32 layer bf16
    inputs, which fails. A model of one dtype is left as it is.
    """
    import torch

    floats = {p.dtype for p in model.parameters() if p.is_floating_point()}
    low = floats & {torch.bfloat16, torch.float16}
    if not low or torch.float32 not in floats:
        return contextlib.nullcontext()
    device = next(model.parameters()).device.type
    return torch.autocast(device_type=device, dtype=torch.bfloat16 if torch.bfloat16 in low else torch.float16)
