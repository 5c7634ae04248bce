"""Images once per pair: the DPO forward encodes each pair's images once and gives the features to both sides.

A pair batch holds 2B sequences (chosen first, then rejected) that share their images, so the plain
forward runs the vision tower and projector twice on every image. Here the image inputs of the chosen
half are encoded once (`get_image_features`, the model's own encoder path) and the result is handed to
the forward of all 2B sequences through transformers' `mm_encoder_outputs` hook, repeated in the order
the forward expects (chosen images, then the same again). The text side is untouched (the same
input_ids, masks, mRoPE grids), so the log-probs equal the plain forward's; tests/vlmtrain/training/test_dpo_images.py
proves that for every family in `PROVED`, and counts one vision-tower call per pair image.

When the vision tower and projector have nothing trainable and no adapter (the usual LoRA-on-the-LLM
setup), the features are the same under the policy and under the adapter-disabled reference, so one
encoding per step serves both (`shared_encoding`). Otherwise each model state encodes once.

A family not in `PROVED` (Mllama: its images enter through cross-attention, not through
`mm_encoder_outputs`) keeps the exact plain path of 2B sequences; `why_not_once` says so by name.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from vlmtrain.models.families import family_of

if TYPE_CHECKING:  # pragma: no cover
    import torch

# families whose once-per-pair forward equals the plain 2B forward (tests/vlmtrain/training/test_dpo_images.py)
PROVED: frozenset[str] = frozenset({
    "llava", "llava_next", "llava_onevision", "mistral3", "internvl", "aya_vision", "gemma3", "paligemma",
    "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "glm4v", "idefics3", "smolvlm",
})
# fields of the encoder output that the forwards read (the rest are only passed back to the caller)
_READ_FIELDS = ("pooler_output", "deepstack_features")


def _unwrap(model: Any) -> Any:
    """The transformers model under DDP's wrapper and peft's (which forward the call unchanged)."""
    model = getattr(model, "module", model)
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def why_not_once(model: Any) -> str | None:
    """None when `model`'s family encodes a pair's images once; else why it keeps the plain 2B forward."""
    base = _unwrap(model)
    model_type = getattr(getattr(base, "config", None), "model_type", None)
    if model_type not in PROVED:
        return (f"DPO: family '{model_type}' encodes each image once per sequence (2B per batch of B pairs): "
                "the once-per-pair shortcut is proved only for " + ", ".join(sorted(PROVED)))
    if not hasattr(base, "get_image_features"):
        return f"DPO: family '{model_type}' has no get_image_features; images are encoded per sequence"
    return None


def _image_keys(base: Any, batch: dict[str, Any]) -> list[str]:
    """The batch keys that `get_image_features` takes (pixel_values, image_grid_thw, pixel_attention_mask, ...)."""
    params = inspect.signature(base.get_image_features).parameters
    return [k for k in params if k in batch and hasattr(batch[k], "shape")]


def _halves_equal(value: torch.Tensor) -> bool:
    import torch

    if value.shape[0] % 2:
        return False
    first, second = value.chunk(2, dim=0)
    return bool(torch.equal(first, second))


def _twice(value: Any) -> Any:
    """The encoder output of the chosen half, repeated for the rejected half in the forward's own layout:
    a tensor (images or patches along dim 0) is concatenated with itself; a list of per-image tensors is
    followed by itself; a list of such lists (Qwen3-VL's deepstack features, one per layer) per element."""
    import torch

    if isinstance(value, torch.Tensor):
        return torch.cat([value, value], dim=0)
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple)) for v in value):
        return type(value)(_twice(v) for v in value)
    if isinstance(value, (list, tuple)):
        return type(value)([*value, *value])
    return value


def encode_pair_images(*, model: Any, batch: dict[str, Any]) -> Any | None:
    """The image features of a pair batch, encoded once per pair and laid out for all 2B sequences; None
    when this batch or family must take the plain path (no images, a family not proved, or chosen and
    rejected image inputs that differ: then encoding once would not be exact)."""
    if why_not_once(model) is not None:
        return None
    base = _unwrap(model)
    keys = _image_keys(base, batch)
    if "pixel_values" not in keys or not all(_halves_equal(batch[k]) for k in keys):
        return None
    half = {k: batch[k].chunk(2, dim=0)[0] for k in keys}
    out = base.get_image_features(**half, return_dict=True)
    doubled = type(out)(**{k: _twice(getattr(out, k)) for k in _READ_FIELDS if getattr(out, k, None) is not None})
    return doubled


def forward_inputs(*, batch: dict[str, Any], encoded: Any | None) -> dict[str, Any]:
    """The model's forward arguments: the pair batch without labels, with the encoded images in place of
    the pixels when there are any (the forward refuses both at once)."""
    inputs = {k: v for k, v in batch.items() if k not in ("labels", "tasks")}
    if encoded is not None:
        for key in ("pixel_values", "pixel_attention_mask"):
            inputs.pop(key, None)
        inputs["mm_encoder_outputs"] = {"image": encoded}
    return inputs


def images_frozen(model: Any) -> bool:
    """True when no vision or projector parameter trains and none belongs to an adapter: then the policy
    and the adapter-disabled reference see the same image features, and one encoding serves both."""

    base = _unwrap(model)
    try:
        family = family_of(base.config.model_type)
    except ValueError:
        return False
    for name, param in getattr(model, "module", model).named_parameters():
        if family.find_component(name) in ("vision", "projector") and (param.requires_grad or "lora_" in name):
            return False
    return True
