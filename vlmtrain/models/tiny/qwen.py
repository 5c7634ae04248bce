"""Tiny Qwen-family VLMs (Qwen2.5-VL, Qwen3-VL, Qwen3.5), with their real processors and chat templates.

Shared: the tokenizer has Qwen's special tokens (no BOS, `<|endoftext|>` pads, `<|im_end|>` ends a
turn and stops generation) and the vision placeholders `<|vision_start|><|image_pad|><|vision_end|>`.
Every image is resized to a fixed size (min = max pixels) so that it becomes 4 image tokens; the
language model is the shared 2 x 64 decoder of `vlmtrain.models.tiny.builders`.
"""

from __future__ import annotations

from typing import Any

from vlmtrain.data.chat import shipped_template
from vlmtrain.models.tiny.builders import TEXT, finish, token_ids
from vlmtrain.models.tiny.tokenizer import train_tokenizer

VISION_TOKENS = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_start_token": "<|vision_start|>",
    "vision_end_token": "<|vision_end|>",
}
QWEN_SPECIALS = ("<|im_start|>", "<|im_end|>")


def qwen_tokenizer() -> Any:
    return train_tokenizer(extra_special_tokens=VISION_TOKENS, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                           unk=None, specials=QWEN_SPECIALS)


def _vision_ids(tokenizer: Any) -> dict[str, int]:
    return {k.removesuffix("_token") + "_token_id": tokenizer.convert_tokens_to_ids(v) for k, v in VISION_TOKENS.items()}


def _sized(*, patch: int) -> dict[str, Any]:
    """Image-processor settings that turn every image into 4 x 4 patches -> 2 x 2 merged = 4 tokens."""
    pixels = (4 * patch) ** 2
    return {"size": {"shortest_edge": pixels, "longest_edge": pixels}, "patch_size": patch, "merge_size": 2,
            "temporal_patch_size": 2}


def _stops(tokenizer: Any) -> list[int]:
    return [tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.convert_tokens_to_ids("<|endoftext|>")]


def build_qwen2_5_vl(*, seed: int) -> tuple[Any, Any]:
    """Qwen2.5-VL: window-attention vision tower (2 blocks, one full-attention) -> MLP merger -> Qwen2."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
    )

    tokenizer = qwen_tokenizer()
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**_sized(patch=14)), tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(**_sized(patch=14)), chat_template=shipped_template("qwen2_vl"),
    )
    config = Qwen2_5_VLConfig(
        text_config={**TEXT, **token_ids(tokenizer), "rope_parameters": {
            "rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}},
        vision_config={"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "out_hidden_size": 64,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
                       "fullatt_block_indexes": [1]},
        **_vision_ids(tokenizer),
    )
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config)
    return finish(model=model, tokenizer=tokenizer, stop=_stops(tokenizer)), processor


def build_qwen3_vl(*, seed: int) -> tuple[Any, Any]:
    """Qwen3-VL: SigLIP-2-style tower (patch 16) with DeepStack mergers feeding LLM layer 0 -> Qwen3."""
    import torch
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer = qwen_tokenizer()
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**_sized(patch=16)), tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(**_sized(patch=16)), chat_template=shipped_template("qwen3_vl"),
    )
    config = Qwen3VLConfig(
        text_config={**TEXT, **token_ids(tokenizer), "head_dim": 16, "rope_parameters": {
            "rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True, "rope_theta": 10000.0}},
        vision_config={"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "out_hidden_size": 64,
                       "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "num_position_embeddings": 16, "deepstack_visual_indexes": [0]},
        **_vision_ids(tokenizer),
    )
    torch.manual_seed(seed)
    model = Qwen3VLForConditionalGeneration(config)
    return finish(model=model, tokenizer=tokenizer, stop=_stops(tokenizer)), processor


def build_qwen3_5(*, seed: int) -> tuple[Any, Any]:
    """Qwen3.5: Qwen3-VL-style tower -> hybrid LLM (a gated-delta-net linear-attention layer, then full
    attention); the checkpoint's thinking chat template (see `vlmtrain.data.chat` and `model.thinking`)."""
    import torch
    from transformers import (
        Qwen2VLImageProcessor,
        Qwen3_5Config,
        Qwen3_5ForConditionalGeneration,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    tokenizer = train_tokenizer(extra_special_tokens=VISION_TOKENS, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                                unk=None, specials=(*QWEN_SPECIALS, "<think>", "</think>"))
    processor = Qwen3VLProcessor(
        image_processor=Qwen2VLImageProcessor(**_sized(patch=16)), tokenizer=tokenizer,
        video_processor=Qwen3VLVideoProcessor(**_sized(patch=16)), chat_template=shipped_template("qwen3_5"),
    )
    text = {**TEXT, **token_ids(tokenizer), "head_dim": 16, "layer_types": ["linear_attention", "full_attention"],
            "linear_key_head_dim": 16, "linear_value_head_dim": 16, "linear_num_key_heads": 4,
            "linear_num_value_heads": 4, "rope_parameters": {
                "rope_type": "default", "mrope_section": [1, 1, 2], "mrope_interleaved": True,
                "rope_theta": 10000.0, "partial_rotary_factor": 0.5}}
    config = Qwen3_5Config(
        text_config=text,
        vision_config={"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "out_hidden_size": 64,
                       "patch_size": 16, "spatial_merge_size": 2, "temporal_patch_size": 2,
                       "num_position_embeddings": 16},
        **_vision_ids(tokenizer),
    )
    torch.manual_seed(seed)
    model = Qwen3_5ForConditionalGeneration(config)
    return finish(model=model, tokenizer=tokenizer, stop=_stops(tokenizer)), processor
