"""Tiny offline models load through the Auto classes, and LoRA lands on the language model only."""

from __future__ import annotations

import pytest
from train_rows import png

from vlmtrain.models.tiny.registry import FAMILIES, write_tiny


@pytest.fixture(scope="module")
def llava_model(tiny_llava):
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(str(tiny_llava))


def test_auto_classes_load_the_tiny_llava(tiny_llava, llava_processor, llava_model):
    from transformers import LlavaForConditionalGeneration, LlavaProcessor

    assert isinstance(llava_model, LlavaForConditionalGeneration)
    assert isinstance(llava_processor, LlavaProcessor)
    tok = llava_processor.tokenizer
    assert tok.image_token == "<image>" and llava_model.config.image_token_id == tok.convert_tokens_to_ids("<image>")
    assert len(tok) == llava_model.config.text_config.vocab_size
    # medical words and digits are whole or near-whole tokens, not bytes
    assert len(tok.tokenize(" CT scan of the chest, axial MR modality 512")) <= 12


def test_image_expansion_matches_the_vision_features(llava_processor, llava_model):
    import io

    import torch
    from PIL import Image

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What modality?"}]}]
    prompt = llava_processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert prompt == "<s><|user|>\n<image>What modality?</s><|assistant|>\n"
    image = Image.open(io.BytesIO(png(colour="red", size=50)))
    inputs = llava_processor(text=[prompt], images=[image], return_tensors="pt", add_special_tokens=False)
    n_tokens = int((inputs["input_ids"] == llava_processor.image_token_id).sum())
    assert n_tokens == llava_model.config.image_seq_length == 16
    with torch.no_grad():
        out = llava_model(**inputs)  # raises if tokens and features disagree
    assert out.logits.shape[:2] == inputs["input_ids"].shape


def test_same_seed_same_weights_and_unknown_family(tmp_path):
    import torch

    a, _ = FAMILIES["llava"].build(seed=3)
    b, _ = FAMILIES["llava"].build(seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    with pytest.raises(ValueError, match="unknown family 'lava'.*llava"):
        write_tiny(out=tmp_path, family="lava")


def test_lora_targets_only_the_language_model(tiny_llava, colour_dataset, tmp_path):
    from vlmtrain.config.train import validate_train_config
    from vlmtrain.models.build import build_model

    config = validate_train_config({"name": "t", "model": {"path": str(tiny_llava)},
                                    "data": {"path": str(colour_dataset)}, "lora": {"r": 4}}, base_dir=tmp_path)
    built = build_model(config=config)  # the path `vlmtrain run` takes
    peft_model = built.model
    adapted = {n for n, _ in peft_model.named_modules() if n.endswith(".lora_A")}
    assert adapted and all(".language_model." in n for n in adapted)
    kinds = {n.split(".")[-2] for n in adapted}
    assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    trainable = [n for n, p in peft_model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    rows = {line.split()[0]: line for line in built.table().splitlines()}
    assert "lora r=4" in rows["llm"] and rows["vision"].split()[2] == "0"  # the vision tower trains nothing
