"""Builders of tiny random VLMs, one function per family, from config objects only (offline).

Shared sizes: every language model is a 2-layer, width-64 decoder whose every linear layer is at least
64 wide (4 heads of 16, and 4 key/value heads, so k_proj/v_proj are 64 wide too): bitsandbytes' 4-bit
CPU kernel breaks on layers narrower than 64, and QLoRA tests quantise these models. Vision towers are
tiny too (32 px images, patch 8 or 14) and are never quantised (see `vlmtrain.models.quant`).
"""

from __future__ import annotations

from typing import Any

from vlmtrain.models.tiny.tokenizer import chat_template, train_tokenizer

# The language model of every tiny family: 2 x 64, every linear >= 64 wide (4-bit CPU kernels).
TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
    # Wider than the usual 0.02: with hidden size 64 that would leave LM-head logits so small that
    # LoRA could not express confident answers, and tiny fine-tunes would barely lower the loss.
    "initializer_range": 0.2,
}


def token_ids(tokenizer: Any) -> dict[str, int]:
    """The vocabulary size and BOS/EOS/PAD ids of a tiny tokenizer, for a text config."""
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def finish(*, model: Any, tokenizer: Any, stop: list[int] | None = None) -> Any:
    """Set the generation config's special ids; `stop` (the checkpoint's end-of-turn ids) ends generation."""
    generation = model.generation_config
    generation.bos_token_id = tokenizer.bos_token_id
    generation.eos_token_id = stop or tokenizer.eos_token_id
    generation.pad_token_id = tokenizer.pad_token_id
    return model


_token_ids = token_ids
_finish = finish


def build_qwen2_vl(*, seed: int) -> tuple[Any, Any]:
    """Qwen2-VL with its real processor (Qwen2VLImageProcessor + Qwen2VLVideoProcessor).

    Every image is resized to 56 x 56 (min = max pixels): 4 x 4 patches of 14 px, merged 2 x 2, so
    each image becomes 4 `<|image_pad|>` tokens between `<|vision_start|>` and `<|vision_end|>`.
    Rotary positions are 3-D (M-RoPE); the sections (2, 3, 3) sum to head_dim / 2 = 8.
    """
    import torch
    from transformers import (
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    specials = {
        "image_token": "<|image_pad|>",
        "video_token": "<|video_pad|>",
        "vision_start_token": "<|vision_start|>",
        "vision_end_token": "<|vision_end|>",
    }
    tokenizer = train_tokenizer(extra_special_tokens=specials)
    pixels = 56 * 56
    size = {"shortest_edge": pixels, "longest_edge": pixels}
    processor = Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2),
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(size=size, patch_size=14, merge_size=2, temporal_patch_size=2),
        chat_template=chat_template(image_placeholder="<|vision_start|><|image_pad|><|vision_end|>"),
    )
    ids = {k.removesuffix("_token") + "_token_id": tokenizer.convert_tokens_to_ids(v) for k, v in specials.items()}
    config = Qwen2VLConfig(
        text_config={**TEXT, **_token_ids(tokenizer), "rope_parameters": {
            "rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}},
        vision_config={"depth": 2, "embed_dim": 64, "hidden_size": 64, "num_heads": 4, "mlp_ratio": 2,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2},
        **ids,
    )
    torch.manual_seed(seed)
    return _finish(model=Qwen2VLForConditionalGeneration(config), tokenizer=tokenizer), processor


def build_idefics3(*, seed: int) -> tuple[Any, Any]:
    """Idefics3 / SmolVLM layout: SigLIP-style tower -> pixel-shuffle connector -> Llama.

    32 px images, patch 8: 4 x 4 = 16 patches, pixel shuffle (scale 2) -> 4 tokens per image, wrapped
    as `<fake_token_around_image><global-img><image>*4<fake_token_around_image>`; no image splitting.
    """
    import torch
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3ImageProcessor,
        Idefics3Processor,
        LlamaConfig,
    )

    specials = {
        "image_token": "<image>",
        "fake_image_token": "<fake_token_around_image>",
        "global_image_token": "<global-img>",
        "end_of_utterance_token": "<end_of_utterance>",
    }
    tokenizer = train_tokenizer(extra_special_tokens=specials)
    image_processor = Idefics3ImageProcessor(
        do_image_splitting=False, size={"longest_edge": 32}, max_image_size={"longest_edge": 32}
    )
    processor = Idefics3Processor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        image_seq_len=4,
        chat_template=chat_template(image_placeholder="<image>"),
    )
    config = Idefics3Config(
        vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "image_size": 32, "patch_size": 8},
        text_config=LlamaConfig(**TEXT, **_token_ids(tokenizer)),
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    return _finish(model=Idefics3ForConditionalGeneration(config), tokenizer=tokenizer), processor


def build_paligemma(*, seed: int) -> tuple[Any, Any]:
    """PaliGemma layout: SigLIP tower -> linear projector -> Gemma, prefix-LM, no chat template.

    32 px images, patch 8: 16 `<image>` tokens, then BOS, the prefix (the question) and a newline; the
    suffix (the answer + EOS) is what the model learns. The processor adds PaliGemma's 1,152
    `<locNNNN>`/`<segNNN>` tokens, so the vocabulary is sized after the processor is built.
    """
    import torch
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        PaliGemmaForConditionalGeneration,
        PaliGemmaProcessor,
        SiglipImageProcessor,
    )

    tokenizer = train_tokenizer(extra_special_tokens={"image_token": "<image>"})
    image_processor = SiglipImageProcessor(size={"height": 32, "width": 32})
    image_processor.image_seq_length = 16
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    text = GemmaConfig(**{**TEXT, "head_dim": 16}, **_token_ids(tokenizer))
    config = PaliGemmaConfig(
        vision_config={"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "image_size": 32, "patch_size": 8, "projection_dim": 64},
        text_config=text,
        projection_dim=64,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    return _finish(model=PaliGemmaForConditionalGeneration(config), tokenizer=tokenizer), processor
