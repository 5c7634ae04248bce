"""`model.processor`: image-processor settings a real checkpoint needs, checked per family and applied on load.

```yaml
model:
  path: Qwen/Qwen2.5-VL-3B-Instruct
  processor: {max_pixels: 589824, min_pixels: 3136}       # qwen families: pixels per image
# model: {path: HuggingFaceTB/SmolVLM2-2.2B-Instruct, processor: {do_image_splitting: false, longest_edge: 512}}
```

Why defaults that cap: a Qwen checkpoint's own `max_pixels` (12,845,056) turns one 4K photo into
~16,000 tokens, which fills any sane `data.max_length` and gets the row rejected. Like LLaMA-Factory
(`image_max_pixels: 768 * 768`), vlmtrain caps Qwen images at 768 x 768 pixels (~750 tokens) unless
the config says otherwise; a checkpoint whose own maximum is lower keeps it. Idefics3/SmolVLM keep
the checkpoint's splitting unless told. Keys a family does not have are refused with the ones it has.
Pure data apart from `apply`; nothing here imports torch.
"""

from __future__ import annotations

from typing import Any

from vlmdata.config.errors import did_you_mean
from vlmtrain.models.families import Family

QWEN_MAX_PIXELS = 768 * 768  # LLaMA-Factory's default image_max_pixels

KEYS: dict[str, dict[str, type]] = {
    "qwen": {"min_pixels": int, "max_pixels": int},
    "idefics": {"do_image_splitting": bool, "longest_edge": int, "max_image_size": int, "image_seq_len": int},
    "llava_next": {},
    "fixed": {},
}


def problems(*, family: Family, settings: dict[str, Any], config: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """(YAML path, message) for each setting `family` cannot take or a value it cannot use.

    `config` (the model's config.json as a dict, when known) lets `image_seq_len` be checked against the
    number of tokens the model's vision tower actually produces per image.
    """
    allowed = KEYS[family.processor]
    found: list[tuple[str, str]] = []
    for key, value in settings.items():
        where = f"model.processor.{key}"
        if key not in allowed:
            has = ", ".join(allowed) or "none"
            found.append((where, f"family '{family.model_type}' has no processor setting '{key}'"
                                 f"{did_you_mean(key, list(allowed))} (its settings: {has})"))
            continue
        kind = allowed[key]
        if kind is int and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            found.append((where, f"must be a positive whole number, got {value!r}"))
        elif kind is bool and not isinstance(value, bool):
            found.append((where, f"must be true or false, got {value!r}"))
    mn, mx = settings.get("min_pixels"), settings.get("max_pixels")
    if isinstance(mn, int) and isinstance(mx, int) and mn > mx:
        found.append(("model.processor.min_pixels", f"min_pixels ({mn}) is above max_pixels ({mx})"))
    seq = settings.get("image_seq_len")
    expected = _image_seq_len(config) if config is not None else None
    if isinstance(seq, int) and expected is not None and seq != expected:
        found.append(("model.processor.image_seq_len", f"the model's vision tower gives {expected} tokens per image "
                                                       f"(image_size/patch_size squared over scale_factor squared), "
                                                       f"not {seq}; leave it out or set {expected}"))
    return found


def _image_seq_len(config: dict[str, Any]) -> int | None:
    vision = config.get("vision_config") or {}
    size, patch, scale = vision.get("image_size"), vision.get("patch_size"), config.get("scale_factor")
    if not (size and patch and scale):
        return None
    return int((size // patch) ** 2 // scale**2)


def apply(*, family: Family, settings: dict[str, Any], processor: Any) -> Any:
    """Set `settings` (with the family's defaults) on a loaded processor; returns it."""
    image = getattr(processor, "image_processor", None)
    if family.processor == "qwen" and image is not None:
        size = dict(getattr(image, "size", None) or {})
        lo = settings.get("min_pixels", size.get("shortest_edge", getattr(image, "min_pixels", None)))
        hi = settings.get("max_pixels", min(size.get("longest_edge") or QWEN_MAX_PIXELS, QWEN_MAX_PIXELS))
        image.size = {"shortest_edge": lo, "longest_edge": hi}
        for name, value in (("min_pixels", lo), ("max_pixels", hi)):
            if hasattr(image, name):
                setattr(image, name, value)
    if family.processor == "idefics" and image is not None:
        if "do_image_splitting" in settings:
            image.do_image_splitting = settings["do_image_splitting"]
        if "longest_edge" in settings:
            image.size = {"longest_edge": settings["longest_edge"]}
        if "max_image_size" in settings:
            image.max_image_size = {"longest_edge": settings["max_image_size"]}
        if "image_seq_len" in settings:
            processor.image_seq_len = settings["image_seq_len"]
    return processor
