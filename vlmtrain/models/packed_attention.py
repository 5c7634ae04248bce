"""`packed_sdpa`: SDPA that attends within each packed row only, without computing the masked blocks.

Why: on CPU, SDPA with the block-diagonal mask of a packed sequence still computes the whole T x T score
matrix, ~ (rows-1)/rows of it thrown away. Here the rows are cut apart from the restarting `position_ids`
(1, T) and each runs SDPA on its own diagonal block of the model's own mask: causal rows take SDPA's
`is_causal` kernel, rows whose block is anything else (a sliding window shorter than the row, Gemma 3's
bidirectional image blocks) take their block of the mask. So the result is the masked SDPA's, whatever mask
the family builds (tests/vlmtrain/data/test_packing.py), at the attention cost of the rows alone. Anything that is
not a packed, block-diagonal self-attention (no position ids, a cache, cross-attention, 3-D mRoPE positions
of the text model, vision towers, a mask with weight across rows) falls through to the stock SDPA.
"""

from __future__ import annotations

from typing import Any

NAME = "packed_sdpa"
_PLAN = "_vlmtrain_packed_plan"  # per-mask cache (the same mask tensor serves every layer of one forward)


def _row_plan(*, mask: Any, bounds: list[int]) -> list[tuple[int, int, Any]] | None:
    """[(start, stop, block mask or None for plain causal)] when `mask` (1, 1, T, T) bool is block-diagonal
    over the rows in `bounds`, else None (the stock SDPA must see the whole mask)."""
    import torch

    square = mask[0, 0]
    plan, inside = [], 0
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        block = square[a:b, a:b]
        inside += int(block.sum())
        causal = torch.ones(b - a, b - a, dtype=torch.bool, device=block.device).tril()
        plan.append((a, b, None if torch.equal(block, causal) else block))
    return plan if inside == int(square.sum()) else None


def packed_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                scaling: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    import torch
    from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward

    def stock() -> tuple[Any, None]:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      **kwargs)

    positions = kwargs.get("position_ids")
    length = query.shape[2]
    if (positions is None or positions.dim() != 2 or positions.shape[0] != 1 or query.shape[0] != 1
            or key.shape[2] != length or positions.shape[1] != length or attention_mask is None
            or attention_mask.dtype != torch.bool or tuple(attention_mask.shape) != (1, 1, length, length)):
        return stock()
    plan = getattr(attention_mask, _PLAN, None)
    if plan is None:
        starts = (positions[0] == 0).nonzero().flatten().tolist()
        if not starts or starts[0] != 0:
            return stock()
        plan = _row_plan(mask=attention_mask, bounds=[*starts, length]) or []
        setattr(attention_mask, _PLAN, plan)
    if not plan:
        return stock()
    groups = query.shape[1] // key.shape[1]
    key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    drop = dropout if module.training else 0.0
    parts = [torch.nn.functional.scaled_dot_product_attention(
        query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], attn_mask=block, dropout_p=drop, scale=scaling,
        is_causal=block is None) for a, b, block in plan]
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
