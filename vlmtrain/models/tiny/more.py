"""Tiny Gemma 3, LLaVA-NeXT, LLaVA-OneVision and SmolVLM2 models, with real processors and chat templates.

Every tokenizer carries its checkpoint's special tokens (BOS/EOS/PAD, turn markers, image tokens), so
the checkpoint's chat template (vlmtrain/chat_templates/) renders unchanged; where the published
template cannot be trained on (LLaVA-1.6-mistral, LLaVA-OneVision), the tiny model ships the fixed one
a user would set with `model.chat_template`. Images are 32 px; language models are 2 x 64.
"""

from __future__ import annotations

from typing import Any

from vlmtrain.data.chat import shipped_template
from vlmtrain.models.tiny.builders import TEXT, finish, token_ids
from vlmtrain.models.tiny.tokenizer import train_tokenizer

SIGLIP = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
          "image_size": 32, "patch_size": 8}


def _ids(tokenizer: Any, *tokens: str) -> list[int]:
    return [tokenizer.convert_tokens_to_ids(t) for t in tokens]


def build_gemma3(*, seed: int) -> tuple[Any, Any]:
    """Gemma 3: SigLIP 32 px (4 x 4 patches) -> average pool to 2 x 2 = 4 soft tokens -> Gemma 3 text.

    The chat template writes `<start_of_image>`; the processor expands it to `\\n\\n<start_of_image>`
    + 4 x `<image_soft_token>` + `<end_of_image>\\n\\n`. `<end_of_turn>` ends answers and generation.
    """
    import torch
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3ImageProcessor,
        Gemma3Processor,
    )

    image_tokens = {"image_token": "<image_soft_token>", "boi_token": "<start_of_image>",
                    "eoi_token": "<end_of_image>"}
    tokenizer = train_tokenizer(extra_special_tokens=image_tokens, bos="<bos>", eos="<eos>", pad="<pad>",
                                unk="<unk>", specials=("<start_of_turn>", "<end_of_turn>"))
    processor = Gemma3Processor(
        image_processor=Gemma3ImageProcessor(size={"height": 32, "width": 32}, do_pan_and_scan=False),
        tokenizer=tokenizer, image_seq_length=4, chat_template=shipped_template("gemma3"),
    )
    text = {**TEXT, **token_ids(tokenizer), "head_dim": 16, "sliding_window": 64,
            "layer_types": ["sliding_attention", "full_attention"], "query_pre_attn_scalar": 16}
    ids = _ids(tokenizer, "<image_soft_token>", "<start_of_image>", "<end_of_image>")
    config = Gemma3Config(text_config=text, vision_config=SIGLIP, mm_tokens_per_image=4,
                          image_token_index=ids[0], boi_token_index=ids[1], eoi_token_index=ids[2],
                          tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = Gemma3ForConditionalGeneration(config)
    return finish(model=model, tokenizer=tokenizer, stop=_ids(tokenizer, "<eos>", "<end_of_turn>")), processor


def build_llava_next(*, seed: int) -> tuple[Any, Any]:
    """LLaVA-NeXT (1.6, mistral layout): CLIP 32 px, any-resolution grid up to 64 px + a learned
    `image_newline` per row -> Mistral-style Llama; the fixed llava_next-mistral template (EOS after answers)."""
    import torch
    from transformers import (
        CLIPVisionConfig,
        LlavaNextConfig,
        LlavaNextForConditionalGeneration,
        LlavaNextImageProcessor,
        LlavaNextProcessor,
    )

    tokenizer = train_tokenizer(extra_special_tokens={"image_token": "<image>"})
    grid = [[32, 32], [32, 64], [64, 32]]
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                              image_grid_pinpoints=grid)
    processor = LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=8,
                                   vision_feature_select_strategy="default", num_additional_image_tokens=1,
                                   chat_template=shipped_template("llava_next-mistral"), image_token="<image>")
    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=64)
    config = LlavaNextConfig(vision_config=vision, text_config={**TEXT, **token_ids(tokenizer), "model_type": "llama"},
                             image_token_index=tokenizer.convert_tokens_to_ids("<image>"), image_grid_pinpoints=grid,
                             vision_feature_select_strategy="default", vision_feature_layer=-1,
                             tie_word_embeddings=False)
    torch.manual_seed(seed)
    return finish(model=LlavaNextForConditionalGeneration(config), tokenizer=tokenizer), processor


def build_llava_onevision(*, seed: int) -> tuple[Any, Any]:
    """LLaVA-OneVision: SigLIP 32 px any-resolution (max 2 x 2 grid) + `image_newline` -> Qwen2; ChatML
    with the fixed llava_onevision template (the published one's generation prompt differs by a space)."""
    import torch
    from transformers import (
        LlavaOnevisionConfig,
        LlavaOnevisionForConditionalGeneration,
        LlavaOnevisionImageProcessor,
        LlavaOnevisionProcessor,
        LlavaOnevisionVideoProcessor,
    )

    tokenizer = train_tokenizer(extra_special_tokens={"image_token": "<image>", "video_token": "<video>"},
                                bos=None, eos="<|im_end|>", pad="<|endoftext|>", unk=None,
                                specials=("<|im_start|>", "<|im_end|>"))
    grid = [[32, 32], [32, 64], [64, 32], [64, 64]]
    image_processor = LlavaOnevisionImageProcessor(size={"height": 32, "width": 32}, image_grid_pinpoints=grid)
    video_processor = LlavaOnevisionVideoProcessor(size={"height": 32, "width": 32})
    processor = LlavaOnevisionProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        video_processor=video_processor, num_image_tokens=16,
                                        vision_feature_select_strategy="full", vision_aspect_ratio="anyres_max_9",
                                        chat_template=shipped_template("llava_onevision"))
    config = LlavaOnevisionConfig(
        vision_config={**SIGLIP, "model_type": "siglip_vision_model"},
        text_config={**TEXT, **token_ids(tokenizer), "model_type": "qwen2"},
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
        image_grid_pinpoints=grid, vision_feature_select_strategy="full", vision_feature_layer=-1,
        vision_aspect_ratio="anyres_max_9", tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlavaOnevisionForConditionalGeneration(config)
    return finish(model=model, tokenizer=tokenizer, stop=_ids(tokenizer, "<|im_end|>", "<|endoftext|>")), processor


def build_smolvlm(*, seed: int) -> tuple[Any, Any]:
    """SmolVLM2: SigLIP 32 px -> pixel-shuffle connector (4 tokens per image, no splitting) -> SmolLM2
    (Llama); `<end_of_utterance>` ends answers. Its processor needs `num2words` (grid positions)."""
    import torch
    from transformers import (
        LlamaConfig,
        SmolVLMConfig,
        SmolVLMForConditionalGeneration,
        SmolVLMImageProcessor,
        SmolVLMProcessor,
        SmolVLMVideoProcessor,
    )

    specials = {"image_token": "<image>", "fake_image_token": "<fake_token_around_image>",
                "global_image_token": "<global-img>", "end_of_utterance_token": "<end_of_utterance>"}
    tokenizer = train_tokenizer(extra_special_tokens=specials, bos="<|im_start|>", eos="<end_of_utterance>",
                                pad="<|im_end|>", unk="<|endoftext|>", specials=())
    image_processor = SmolVLMImageProcessor(do_image_splitting=False, size={"longest_edge": 32},
                                            max_image_size={"longest_edge": 32})
    video_processor = SmolVLMVideoProcessor(size={"longest_edge": 32}, max_image_size={"longest_edge": 32})
    processor = SmolVLMProcessor(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                                 image_seq_len=4, chat_template=shipped_template("smolvlm"))
    config = SmolVLMConfig(vision_config=SIGLIP, text_config=LlamaConfig(**TEXT, **token_ids(tokenizer)),
                           scale_factor=2, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
                           tie_word_embeddings=False)
    torch.manual_seed(seed)
    return finish(model=SmolVLMForConditionalGeneration(config), tokenizer=tokenizer), processor
