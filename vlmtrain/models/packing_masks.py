"""Packed attention masks for families whose attention is not plain causal: Gemma 3's bidirectional images.

Why: Gemma 3 lets the tokens of one image attend to each other both ways (its `token_type_ids` mark them), on
top of causal attention, in full and in sliding-window layers. transformers builds the packed
(restarting `position_ids`) mask by re-indexing every mask function with per-row positions, which is right for
causal and sliding-window masks but not for the image-block function of the sliding layers: that one looks up
`token_type_ids` by position, so with per-row positions every row after the first reads another row's token
types. A forward pre-hook on the inner Gemma 3 model builds the two masks itself, in absolute token indices:
`(causal or same image block) and same row` for full layers, `... and within the sliding window` for sliding
layers (the window compares absolute indices of one row, i.e. its own positions), and hands them to the model
as its mask mapping, which the model takes as is. The result equals each row's single-row mask, so a packed
Gemma 3 step equals its rows one at a time (tests/vlmtrain/data/test_packing.py).
"""

from __future__ import annotations

from typing import Any

from vlmtrain.data.packing import row_segments

_BLOCK_MODELS = ("Gemma3Model",)  # inner models that take a {layer type: mask} mapping with image blocks


def attach_packed_block_masks(model: Any) -> bool:
    """Hook every Gemma 3 style inner model of `model` (see the module docstring); returns whether any was."""
    targets = [m for m in model.modules() if type(m).__name__ in _BLOCK_MODELS]
    for module in targets:
        module.register_forward_pre_hook(_packed_block_mask_hook, with_kwargs=True)
    return bool(targets)


def _packed_block_mask_hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any] | None:
    import torch
    from transformers.masking_utils import (
        and_masks,
        blockwise_overlay,
        create_causal_mask,
        sliding_window_overlay,
    )

    positions, types = kwargs.get("position_ids"), kwargs.get("token_type_ids")
    if (positions is None or positions.dim() != 2 or positions.shape[0] != 1 or types is None or args
            or kwargs.get("attention_mask") is not None or kwargs.get("cache") is not None
            or int((positions[0] == 0).sum()) < 2):
        return None  # not a packed batch: the model builds its own masks
    from transformers.models.gemma3.modeling_gemma3 import get_block_sequence_ids_for_mask

    segments = row_segments(position_ids=positions)

    def same_row(batch_idx: Any, head_idx: Any, q_idx: Any, kv_idx: Any) -> Any:
        return segments[batch_idx, q_idx] == segments[batch_idx, kv_idx]

    config = module.config.get_text_config()
    dtype = next(module.parameters()).dtype
    probe = torch.empty((1, positions.shape[1], 1), dtype=dtype, device=positions.device)  # shape, dtype, device
    blocks = get_block_sequence_ids_for_mask(types, device=positions.device)  # ids unique over the packed row
    common = {"config": config, "inputs_embeds": probe, "attention_mask": None, "cache": None, "position_ids": None,
              "or_mask_function": blockwise_overlay(blocks)}
    masks = {"full_attention": create_causal_mask(**common, and_mask_function=same_row)}
    if getattr(config, "sliding_window", None) is not None:
        masks["sliding_attention"] = create_causal_mask(
            **common, and_mask_function=and_masks(same_row, sliding_window_overlay(config.sliding_window)))
    return args, {**kwargs, "attention_mask": masks}
