"""Tiny random-weight vision-language models, built offline, one registry entry per model family.

Why: tests and CPU smoke runs must exercise the real model classes, processors and chat templates of
each family (image-token expansion, LoRA targets, generation) without downloading gigabytes. Each
entry builds a model and processor from config objects only, small enough that a whole fine-tune
runs in seconds; `write_tiny` saves them so `AutoModelForImageTextToText.from_pretrained(out)` and
`AutoProcessor.from_pretrained(out)` load them like any checkpoint.

Adding a family = one builder function (`vlmtrain.models.tiny.builders`, `tiny_qwen`, `tiny_more`,
`tiny_more2`) + one `FAMILIES` entry here, and one entry in `vlmtrain.models.families` (module prefixes,
image and prompt handling); the per-family tests (tests/vlmtrain/models/test_family_matrix.py) are
parametrised over this table, so the new family is tested by that alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vlmtrain.models.tiny.builders import build_idefics3, build_paligemma, build_qwen2_vl
from vlmtrain.models.tiny.more import build_gemma3, build_llava_next, build_llava_onevision, build_smolvlm
from vlmtrain.models.tiny.more2 import (
    build_aya_vision,
    build_glm4v,
    build_internvl,
    build_mistral3,
    build_mllama,
)
from vlmtrain.models.tiny.qwen import build_qwen2_5_vl, build_qwen3_5, build_qwen3_vl
from vlmtrain.models.tiny.tokenizer import chat_template, train_tokenizer


class Builder(Protocol):
    """Builds (model, processor) with weights drawn from `seed`; both have `save_pretrained`."""

    def __call__(self, *, seed: int) -> tuple[Any, Any]: ...


@dataclass(frozen=True)
class TinyFamily:
    """One model family: its name (the `--family` value), what it is, and how to build it."""

    name: str
    description: str
    build: Builder


def _build_llava(*, seed: int) -> tuple[Any, Any]:
    """LLaVA-1.5 layout: CLIP vision tower (with CLS) -> 2-layer MLP projector -> Llama.

    A 32x32 image with patch 8 gives 4x4 = 16 patches + CLS; the "default" feature strategy drops CLS,
    so each `<image>` expands to 16 tokens. The processor is given the same patch size, strategy and
    `num_additional_image_tokens=1` (the CLS) so its expansion matches the model's features exactly.
    """
    from transformers import CLIPImageProcessor, LlavaForConditionalGeneration, LlavaProcessor

    image_size, patch_size = 32, 8
    image_token = "<image>"
    tokenizer = train_tokenizer(extra_special_tokens={"image_token": image_token})
    processor = LlavaProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": image_size},
                                           crop_size={"height": image_size, "width": image_size}),
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,
        chat_template=chat_template(image_placeholder=image_token),
        image_token=image_token,
    )
    model = LlavaForConditionalGeneration(_llava_config(tokenizer=tokenizer, image_token=image_token,
                                                        image_size=image_size, patch_size=patch_size, seed=seed))
    generation = model.generation_config
    generation.bos_token_id = tokenizer.bos_token_id
    generation.eos_token_id = tokenizer.eos_token_id
    generation.pad_token_id = tokenizer.pad_token_id
    return model, processor


def _llava_config(*, tokenizer: Any, image_token: str, image_size: int, patch_size: int, seed: int) -> Any:
    """The tiny LLaVA-1.5 config (seeds torch, so the model built from it right after is reproducible)."""
    import torch
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    vision = CLIPVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        image_size=image_size,
        patch_size=patch_size,
        projection_dim=32,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
        # Wider than the usual 0.02: with hidden size 64 that would leave LM-head logits so small that
        # LoRA could not express confident answers, and tiny fine-tunes would barely lower the loss.
        initializer_range=0.2,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(image_token),
        image_seq_length=(image_size // patch_size) ** 2,
        vision_feature_select_strategy="default",
        vision_feature_layer=-1,
    )
    torch.manual_seed(seed)
    return config


FAMILIES: dict[str, TinyFamily] = {
    "llava": TinyFamily(
        name="llava",
        description="LlavaForConditionalGeneration: CLIP 32px/patch 8 + Llama 2x64, 16 image tokens",
        build=_build_llava,
    ),
    "qwen2_vl": TinyFamily(
        name="qwen2_vl",
        description="Qwen2VLForConditionalGeneration: real Qwen2VLProcessor, 56px -> 4 tokens, M-RoPE 2x64",
        build=build_qwen2_vl,
    ),
    "idefics3": TinyFamily(
        name="idefics3",
        description="Idefics3ForConditionalGeneration (SmolVLM-style): 32px, pixel shuffle -> 4 tokens, Llama 2x64",
        build=build_idefics3,
    ),
    "paligemma": TinyFamily(
        name="paligemma",
        description="PaliGemmaForConditionalGeneration: SigLIP 32px -> 16 tokens, Gemma 2x64, prefix/suffix",
        build=build_paligemma,
    ),
    "qwen2_5_vl": TinyFamily(
        name="qwen2_5_vl",
        description="Qwen2_5_VLForConditionalGeneration: window-attention tower, 56px -> 4 tokens, Qwen2 2x64",
        build=build_qwen2_5_vl,
    ),
    "qwen3_vl": TinyFamily(
        name="qwen3_vl",
        description="Qwen3VLForConditionalGeneration: patch 16, DeepStack mergers, 64px -> 4 tokens, Qwen3 2x64",
        build=build_qwen3_vl,
    ),
    "qwen3_5": TinyFamily(
        name="qwen3_5",
        description="Qwen3_5ForConditionalGeneration: hybrid linear/full attention 2x64, thinking template",
        build=build_qwen3_5,
    ),
    "gemma3": TinyFamily(
        name="gemma3",
        description="Gemma3ForConditionalGeneration: SigLIP 32px pooled to 4 soft tokens, Gemma 3 2x64",
        build=build_gemma3,
    ),
    "llava_next": TinyFamily(
        name="llava_next",
        description="LlavaNextForConditionalGeneration: CLIP 32px any-resolution + image_newline, Llama 2x64",
        build=build_llava_next,
    ),
    "llava_onevision": TinyFamily(
        name="llava_onevision",
        description="LlavaOnevisionForConditionalGeneration: SigLIP 32px anyres_max_9, Qwen2 2x64",
        build=build_llava_onevision,
    ),
    "smolvlm": TinyFamily(
        name="smolvlm",
        description="SmolVLMForConditionalGeneration (SmolVLM2): SigLIP 32px, pixel shuffle -> 4 tokens, 2x64",
        build=build_smolvlm,
    ),
    "mistral3": TinyFamily(
        name="mistral3",
        description="Mistral3ForConditionalGeneration: Pixtral 32px, 2x2 patch merger -> 4 [IMG], Mistral 2x64",
        build=build_mistral3,
    ),
    "internvl": TinyFamily(
        name="internvl",
        description="InternVLForConditionalGeneration (-hf): InternViT 32px, pixel shuffle -> 4 tokens, Qwen2 2x64",
        build=build_internvl,
    ),
    "aya_vision": TinyFamily(
        name="aya_vision",
        description="AyaVisionForConditionalGeneration: SigLIP 32px, pixel shuffle -> 4 tokens, Cohere2 2x64",
        build=build_aya_vision,
    ),
    "glm4v": TinyFamily(
        name="glm4v",
        description="Glm4vForConditionalGeneration (GLM-4.1V): 56px -> 4 tokens, GLM-4 2x64 with M-RoPE",
        build=build_glm4v,
    ),
    "mllama": TinyFamily(
        name="mllama",
        description="MllamaForConditionalGeneration (Llama 3.2 Vision): 1 tile 32px, cross-attention layer 1 of 2",
        build=build_mllama,
    ),
}


def write_tiny(*, out: Path, family: str, seed: int = 0) -> Path:
    """Build the tiny `family` model with weights drawn from `seed` and save it with its processor.

    Returns `out`. Raises ValueError for an unknown family (listing the known ones).
    """
    if family not in FAMILIES:
        raise ValueError(f"unknown family '{family}' (choose from: {', '.join(sorted(FAMILIES))})")
    model, processor = FAMILIES[family].build(seed=seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out
