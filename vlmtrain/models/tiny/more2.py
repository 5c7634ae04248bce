"""Tiny Mistral 3, InternVL, Aya Vision, GLM-4.1V and Llama 3.2 Vision (Mllama) models, offline.

As in `vlmtrain.models.tiny.more`: the checkpoint's special tokens, its chat template (transcribed in
vlmtrain/chat_templates/), its processor class; 32 px images (56 px for GLM's 14 px patches), and
2 x 64 language models. Mllama's cross-attention layer is LLM layer 1 of 2 (`cross_attention_layers`).
"""

from __future__ import annotations

from typing import Any

from vlmtrain.data.chat import shipped_template
from vlmtrain.models.tiny.builders import TEXT, finish, token_ids
from vlmtrain.models.tiny.more import SIGLIP
from vlmtrain.models.tiny.tokenizer import train_tokenizer


def _id(tokenizer: Any, token: str) -> int:
    return tokenizer.convert_tokens_to_ids(token)


def build_mistral3(*, seed: int) -> tuple[Any, Any]:
    """Mistral 3 (Mistral-Small-3.1): Pixtral tower (patch 8, 2-D RoPE) -> patch merger (2 x 2) -> Mistral.

    A 32 px image is 4 x 4 patches, merged to 2 x 2: `[IMG][IMG][IMG_BREAK][IMG][IMG][IMG_END]`.
    """
    import torch
    from transformers import (
        Mistral3Config,
        Mistral3ForConditionalGeneration,
        PixtralImageProcessor,
        PixtralProcessor,
    )

    images = {"image_token": "[IMG]", "image_break_token": "[IMG_BREAK]", "image_end_token": "[IMG_END]"}
    tokenizer = train_tokenizer(extra_special_tokens=images,
                                specials=("[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"))
    image_processor = PixtralImageProcessor(size={"longest_edge": 32}, patch_size={"height": 8, "width": 8})
    processor = PixtralProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                                 spatial_merge_size=2, chat_template=shipped_template("mistral3"))
    vision = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "head_dim": 16, "image_size": 32, "patch_size": 8}
    config = Mistral3Config(vision_config={**vision, "model_type": "pixtral"},
                            text_config={**TEXT, **token_ids(tokenizer), "head_dim": 16, "model_type": "mistral"},
                            image_token_index=_id(tokenizer, "[IMG]"), spatial_merge_size=2, vision_feature_layer=-1,
                            tie_word_embeddings=False)
    torch.manual_seed(seed)
    return finish(model=Mistral3ForConditionalGeneration(config), tokenizer=tokenizer), processor


def build_internvl(*, seed: int) -> tuple[Any, Any]:
    """InternVL 3 (-hf layout): InternViT 32 px (4 x 4 patches) -> pixel shuffle 0.5 -> MLP -> Qwen2.

    Each image is `<img>` + 4 x `<IMG_CONTEXT>` + `</img>`; one tile, no crops.
    """
    import torch
    from transformers import (
        GotOcr2ImageProcessor,
        InternVLConfig,
        InternVLForConditionalGeneration,
        InternVLProcessor,
        InternVLVideoProcessor,
    )

    images = {"start_image_token": "<img>", "end_image_token": "</img>", "context_image_token": "<IMG_CONTEXT>",
              "video_token": "<video>"}
    tokenizer = train_tokenizer(extra_special_tokens=images, bos=None, eos="<|im_end|>", pad="<|endoftext|>",
                                unk=None, specials=("<|im_start|>", "<|im_end|>"))
    for name, token in images.items():  # InternVLProcessor reads `<name>_id` from the tokenizer
        setattr(tokenizer, f"{name}_id", _id(tokenizer, token))
    image_processor = GotOcr2ImageProcessor(size={"height": 32, "width": 32}, crop_to_patches=False)
    video_processor = InternVLVideoProcessor(size={"height": 32, "width": 32})
    processor = InternVLProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                                  image_seq_length=4, chat_template=shipped_template("internvl"))
    vision = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
              "image_size": [32, 32], "patch_size": [8, 8]}
    config = InternVLConfig(vision_config=vision, text_config={**TEXT, **token_ids(tokenizer), "model_type": "qwen2"},
                            image_token_id=_id(tokenizer, "<IMG_CONTEXT>"), image_seq_length=4, downsample_ratio=0.5,
                            tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = InternVLForConditionalGeneration(config)
    return finish(model=model, tokenizer=tokenizer, stop=[_id(tokenizer, "<|im_end|>")]), processor


def build_aya_vision(*, seed: int) -> tuple[Any, Any]:
    """Aya Vision: SigLIP 32 px -> pixel shuffle (2) -> SwiGLU projector -> Cohere2; Cohere turn tokens.

    Each image is `<|START_OF_IMG|>` + 4 x `<|IMG_PATCH|>` (+ line breaks) + `<|END_OF_IMG|>`.
    """
    import torch
    from transformers import (
        AyaVisionConfig,
        AyaVisionForConditionalGeneration,
        AyaVisionProcessor,
        GotOcr2ImageProcessor,
    )

    images = {"image_token": "<image>", "start_of_img_token": "<|START_OF_IMG|>", "end_of_img_token": "<|END_OF_IMG|>",
              "img_patch_token": "<|IMG_PATCH|>", "img_line_break_token": "<|IMG_LINE_BREAK|>"}
    turns = ("<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>", "<|SYSTEM_TOKEN|>")
    tokenizer = train_tokenizer(extra_special_tokens=images, bos="<BOS_TOKEN>", eos="<|END_OF_TURN_TOKEN|>",
                                pad="<PAD>", unk="<UNK>", specials=turns)
    image_processor = GotOcr2ImageProcessor(size={"height": 32, "width": 32}, crop_to_patches=False)
    processor = AyaVisionProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8, img_size=32,
                                   downsample_factor=2, chat_template=shipped_template("aya_vision"))
    text = {**TEXT, **token_ids(tokenizer), "head_dim": 16, "sliding_window": 64,
            "layer_types": ["sliding_attention", "full_attention"], "model_type": "cohere2", "logit_scale": 1.0}
    config = AyaVisionConfig(vision_config={**SIGLIP, "model_type": "siglip_vision_model"}, text_config=text,
                             downsample_factor=2, image_token_index=_id(tokenizer, "<|IMG_PATCH|>"),
                             tie_word_embeddings=False)
    torch.manual_seed(seed)
    return finish(model=AyaVisionForConditionalGeneration(config), tokenizer=tokenizer), processor


def build_glm4v(*, seed: int) -> tuple[Any, Any]:
    """GLM-4.1V: vision tower (56 px, patch 14) -> downsample conv + merger -> GLM-4 with M-RoPE.

    Each image is `<|begin_of_image|>` + 4 x `<|image|>` + `<|end_of_image|>`; answers have no end-of-turn
    token in the template, so vlmtrain writes EOS (`<|endoftext|>`) after them (`vlmtrain.data.chat`).
    """
    import torch
    from transformers import (
        Glm4vConfig,
        Glm4vForConditionalGeneration,
        Glm4vImageProcessor,
        Glm4vProcessor,
        Glm4vVideoProcessor,
    )

    images = {"image_token": "<|image|>", "video_token": "<|video|>"}
    specials = ("[gMASK]", "<sop>", "<|system|>", "<|user|>", "<|assistant|>", "<|begin_of_image|>",
                "<|end_of_image|>", "<|begin_of_video|>", "<|end_of_video|>")
    tokenizer = train_tokenizer(extra_special_tokens=images, bos=None, eos="<|endoftext|>", pad="<|pad|>",
                                unk=None, specials=specials)
    pixels = 56 * 56
    sized = {"size": {"shortest_edge": pixels, "longest_edge": pixels}, "patch_size": 14, "merge_size": 2,
             "temporal_patch_size": 2}
    processor = Glm4vProcessor(image_processor=Glm4vImageProcessor(**sized), tokenizer=tokenizer,
                               video_processor=Glm4vVideoProcessor(**sized), chat_template=shipped_template("glm4v"))
    text = {**TEXT, **token_ids(tokenizer), "rope_parameters": {
        "rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0, "partial_rotary_factor": 1.0}}
    vision = {"depth": 2, "hidden_size": 64, "intermediate_size": 128, "num_heads": 4, "out_hidden_size": 64,
              "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "image_size": 56}
    config = Glm4vConfig(text_config=text, vision_config=vision,
                         image_token_id=_id(tokenizer, "<|image|>"), video_token_id=_id(tokenizer, "<|video|>"),
                         image_start_token_id=_id(tokenizer, "<|begin_of_image|>"),
                         image_end_token_id=_id(tokenizer, "<|end_of_image|>"),
                         video_start_token_id=_id(tokenizer, "<|begin_of_video|>"),
                         video_end_token_id=_id(tokenizer, "<|end_of_video|>"))
    torch.manual_seed(seed)
    model = Glm4vForConditionalGeneration(config)
    stop = [_id(tokenizer, t) for t in ("<|endoftext|>", "<|user|>")]
    return finish(model=model, tokenizer=tokenizer, stop=stop), processor


def build_mllama(*, seed: int) -> tuple[Any, Any]:
    """Llama 3.2 Vision: tiled vision encoder (one 32 px tile) -> projector -> Llama whose layer 1 is a gated
    cross-attention layer reading the image (the `cross_attention` component); `<|eot_id|>` ends answers."""
    import torch
    from transformers import (
        MllamaConfig,
        MllamaForConditionalGeneration,
        MllamaImageProcessor,
        MllamaProcessor,
    )

    specials = ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|python_tag|>")
    tokenizer = train_tokenizer(extra_special_tokens={"image_token": "<|image|>"}, bos="<|begin_of_text|>",
                                eos="<|eot_id|>", pad="<|finetune_right_pad_id|>", unk=None, specials=specials)
    image_processor = MllamaImageProcessor(size={"height": 32, "width": 32}, max_image_tiles=1)
    processor = MllamaProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                chat_template=shipped_template("mllama"))
    vision = {"hidden_size": 64, "num_hidden_layers": 2, "num_global_layers": 1, "attention_heads": 4,
              "intermediate_size": 128, "image_size": 32, "patch_size": 8, "max_num_tiles": 1,
              "intermediate_layers_indices": [0], "vision_output_dim": 128, "supported_aspect_ratios": [[1, 1]]}
    text = {**TEXT, **token_ids(tokenizer), "cross_attention_layers": [1], "rope_parameters": {
        "rope_type": "default", "rope_theta": 10000.0}}
    config = MllamaConfig(vision_config=vision, text_config=text, image_token_index=_id(tokenizer, "<|image|>"))
    torch.manual_seed(seed)
    model = MllamaForConditionalGeneration(config)
    # The gates start at 0 (tanh(0) = 0: the image is shut out until trained), so a fresh model's
    # cross-attention MLP would get no gradient at all; set them open as in a trained checkpoint.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("cross_attn_attn_gate", "cross_attn_mlp_gate")):
                param.fill_(0.5)
    return finish(model=model, tokenizer=tokenizer, stop=[_id(tokenizer, "<|eot_id|>")]), processor
