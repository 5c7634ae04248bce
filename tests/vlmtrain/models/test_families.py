"""Every family: `vlmtrain tiny` -> Auto classes -> exact assistant-only mask -> 3 training steps."""

from __future__ import annotations

import io
import json

import pytest
from click.testing import CliRunner
from tiny_cache import config_text, tiny_dir
from train_rows import make_row, png, supervised_runs, vqa_row

from vlmdata.schema import assistant_texts, image_part, message, text_part
from vlmtrain.data.collate import IGNORE_INDEX, ChatCollator
from vlmtrain.models.families import FAMILIES as TABLE
from vlmtrain.models.tiny.registry import FAMILIES

NAMES = sorted(FAMILIES)
# the first four families, on the generic tiny chat template; every family: test_family_matrix.py
GENERIC = ["idefics3", "llava", "paligemma", "qwen2_vl"]
CLASSES = {
    "llava": ("LlavaForConditionalGeneration", "LlavaProcessor"),
    "qwen2_vl": ("Qwen2VLForConditionalGeneration", "Qwen2VLProcessor"),
    "idefics3": ("Idefics3ForConditionalGeneration", "Idefics3Processor"),
    "paligemma": ("PaliGemmaForConditionalGeneration", "PaliGemmaProcessor"),
    "qwen2_5_vl": ("Qwen2_5_VLForConditionalGeneration", "Qwen2_5_VLProcessor"),
    "qwen3_vl": ("Qwen3VLForConditionalGeneration", "Qwen3VLProcessor"),
    "qwen3_5": ("Qwen3_5ForConditionalGeneration", "Qwen3VLProcessor"),
    "gemma3": ("Gemma3ForConditionalGeneration", "Gemma3Processor"),
    "llava_next": ("LlavaNextForConditionalGeneration", "LlavaNextProcessor"),
    "llava_onevision": ("LlavaOnevisionForConditionalGeneration", "LlavaOnevisionProcessor"),
    "smolvlm": ("SmolVLMForConditionalGeneration", "SmolVLMProcessor"),
    "mistral3": ("Mistral3ForConditionalGeneration", "PixtralProcessor"),
    "internvl": ("InternVLForConditionalGeneration", "InternVLProcessor"),
    "aya_vision": ("AyaVisionForConditionalGeneration", "AyaVisionProcessor"),
    "glm4v": ("Glm4vForConditionalGeneration", "Glm4vProcessor"),
    "mllama": ("MllamaForConditionalGeneration", "MllamaProcessor"),
}




def _rows(*, multi_turn: bool) -> list[dict]:
    from PIL import Image

    rows = [vqa_row(colour="red", answer="red square"), vqa_row(colour="blue", question="Colour?")]
    if multi_turn:
        rows.append(make_row(images=[png(colour="green"), png(colour="yellow", shape="circle")], messages=[
            message("system", [text_part("You are a radiology assistant.")]),
            message("user", [image_part(), text_part("Compare"), image_part(), text_part("these.")]),
            message("assistant", [text_part("Both are MR")]),
            message("user", [text_part("Which plane?")]),
            message("assistant", [text_part("axial")]),
        ]))
    return [{**r, "images": [Image.open(io.BytesIO(i["bytes"])) for i in r["images"]]} for r in rows]


def test_every_tiny_family_has_a_table_entry():
    assert set(FAMILIES) == set(TABLE)


@pytest.mark.parametrize("family", NAMES)
def test_tiny_writes_a_model_the_auto_classes_load(family, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlmtrain.cli import main

    result = CliRunner().invoke(main, ["tiny", str(tmp_path / family), "--family", family])
    assert result.exit_code == 0, result.output
    model = AutoModelForImageTextToText.from_pretrained(str(tmp_path / family))
    processor = AutoProcessor.from_pretrained(str(tmp_path / family))
    assert (type(model).__name__, type(processor).__name__) == CLASSES[family]
    assert model.config.model_type == family
    table = TABLE[family]
    parts = {table.component_of(n) for n, _ in model.named_parameters()}
    assert {"vision", "projector", "llm"} <= parts  # the prefixes cover the whole model
    if family == "qwen2_vl":
        assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessor"
        assert type(processor.video_processor).__name__ == "Qwen2VLVideoProcessor"


@pytest.mark.parametrize("family", GENERIC)
def test_collator_supervises_exactly_the_answers(family):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(tiny_dir(family)))
    table = TABLE[family]
    rows = _rows(multi_turn=table.prompt == "chat")
    batch = ChatCollator(processor=processor, max_length=512, family=table)(rows)
    tok = processor.tokenizer
    for b, row in enumerate(rows):
        runs = supervised_runs(batch["labels"][b].tolist())
        decoded = [tok.decode(run, skip_special_tokens=False) for run in runs]
        assert decoded == [answer + tok.eos_token for answer in assistant_texts(row["messages"])]
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()


def test_prefix_suffix_family_refuses_multi_turn_rows():
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(tiny_dir("paligemma")))
    with pytest.raises(ValueError, match="one question and one answer"):
        ChatCollator(processor=processor, max_length=512, family=TABLE["paligemma"])(_rows(multi_turn=True)[-1:])


@pytest.mark.filterwarnings("error:`is_gradient_checkpointing` is deprecated:FutureWarning")  # silenced around peft
@pytest.mark.parametrize("family", GENERIC)
def test_three_training_steps_give_finite_losses(family, colour_dataset, write_config, tmp_path):
    import math

    from vlmtrain.config.train import load_train_config
    from vlmtrain.recipes.run import run

    body = "lora: {r: 4, alpha: 8, dropout: 0.0}\ntrain: {steps: 3, batch_size: 2, lr: 1.0e-3, device: cpu}\n"
    path = write_config(config_text(model=tiny_dir(family), data=colour_dataset, out=tmp_path / "run", body=body))
    run_dir = run(config=load_train_config(path), echo=lambda _: None)
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(math.isfinite(r["loss"]) and r["loss"] > 0 for r in log)
    assert (run_dir / "adapter_model.safetensors").is_file()
