"""`packed_sdpa`: SDPA that attends within each packed row only, without computing the masked blocks.

Why: on CPU, SDPA with the block-diagonal mask of a packed sequence still computes the whole T x T score
matrix, ~ (rows-1)/rows of it thrown away. Here the rows are cut apart from the restarting `position_ids`
(1, T) and each runs causal SDPA on its own: the same result (tests/vlmtrain/test_packing.py), the
attention cost of the rows alone. Anything else (no position ids, a cache, 3-D mRoPE positions, vision
towers) falls through to the stock SDPA with the stock mask.
"""

from __future__ import annotations

from typing import Any

NAME = "packed_sdpa"


def packed_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    positions = kwargs.get("position_ids")
    if (positions is None or positions.dim() != 2 or positions.shape[0] != 1 or query.shape[0] != 1
            or query.shape[2] != key.shape[2] or positions.shape[1] != query.shape[2]):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)
    starts = (positions[0] == 0).nonzero().flatten().tolist()
    bounds = [*starts, positions.shape[1]]
    groups = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    parts = [torch.nn.functional.scaled_dot_product_attention(
        query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], dropout_p=dropout if module.training else 0.0,
        scale=scaling, is_causal=True) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    return torch.cat(parts, dim=2).transpose(1, 2).contiguous(), None


def register() -> str:
    """Register `packed_sdpa` (attention + its mask, the stock SDPA mask) with transformers; returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

    AttentionInterface.register(NAME, packed_sdpa)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)
    return NAME


def use_packed_attention(model: Any) -> bool:
    """Switch a model running stock SDPA to `packed_sdpa` (flash-attention and eager are left alone: flash
    already runs varlen from the position ids). Returns whether it switched."""
    if getattr(model.config, "_attn_implementation", None) != "sdpa":
        return False
    model.set_attn_implementation(register())
    return True
