"""Chat templates of real checkpoints: BOS and EOS repairs, templates refused at validation with their fix,
thinking templates, and the prompt at inference equal to what training saw."""

from __future__ import annotations

import io

import pytest
from click.testing import CliRunner
from tiny_cache import config_text, tiny_dir
from train_rows import make_row, png, supervised_runs, vqa_row

from vlmdata.schema import image_part, message, text_part
from vlmtrain.data.collate import IGNORE_INDEX, ChatCollator
from vlmtrain.models.families import FAMILIES


def _processor(family: str, **model: object):
    from vlmtrain.config.train import ModelSection
    from vlmtrain.models.load import load_processor

    return load_processor(model=ModelSection.model_validate({"path": str(tiny_dir(family)), **model}))


def _decoded(rows):
    from PIL import Image

    return [{**r, "images": [Image.open(io.BytesIO(i["bytes"])) for i in r["images"]]} for r in rows]


def _two_turns(first: str = "Both are MR", second: str = "axial"):
    return make_row(images=[png(colour="green")], messages=[
        message("user", [image_part(), text_part("What is it?")]),
        message("assistant", [text_part(first)]),
        message("user", [text_part("Which plane?")]),
        message("assistant", [text_part(second)]),
    ])


def test_the_published_llava_1_5_template_gets_bos_and_an_eos_after_every_answer():
    processor = _processor("llava", chat_template="llava-1.5")
    tok = processor.tokenizer
    assert "eos_token" not in processor.chat_template and "bos_token" not in processor.chat_template
    rows = _decoded([vqa_row(colour="red", answer="red square"), _two_turns()])
    batch = ChatCollator(processor=processor, max_length=512, family=FAMILIES["llava"])(rows)
    assert (batch["input_ids"][:, 0] == tok.bos_token_id).all()
    runs = [[tok.decode(r) for r in supervised_runs(batch["labels"][b].tolist())] for b in range(2)]
    assert runs == [[" red square</s>"], [" Both are MR</s>", " axial</s>"]]
    from vlmtrain.data.chat import prompt

    asked = prompt(processor=processor, messages=rows[1]["messages"][:3])
    assert asked.startswith("<s>USER: <image>\n") and asked.endswith("Both are MR</s> USER: Which plane? ASSISTANT:")


def _validate(*, family: str, data, tmp_path, model_extra: str = ""):
    from vlmtrain.cli import main

    text = config_text(model=tiny_dir(family), data=data, out=tmp_path / "run", body="")
    text = text.replace(f"model: {{path: {tiny_dir(family)}}}", f"model: {{path: {tiny_dir(family)}{model_extra}}}")
    path = tmp_path / "train.yaml"
    path.write_text(text, encoding="utf-8")
    return CliRunner().invoke(main, ["validate", str(path)])


@pytest.mark.parametrize(("family", "hub", "fixed", "why"), [
    ("llava_next", "llava_next-mistral-hub", "llava_next-mistral", "<\\s>"),
    ("llava_onevision", "llava_onevision-hub", "llava_onevision", "prefix"),
])
def test_published_templates_the_collator_cannot_use_are_refused_with_the_fix(family, hub, fixed, why, colour_dataset,
                                                                               tmp_path):
    result = _validate(family=family, data=colour_dataset, tmp_path=tmp_path, model_extra=f", chat_template: {hub}")
    assert result.exit_code == 2, result.output
    assert f"family {family}" in result.output and f"model.chat_template: {fixed}" in result.output
    assert why in result.output
    assert "Traceback" not in result.output
    ok = _validate(family=family, data=colour_dataset, tmp_path=tmp_path, model_extra=f", chat_template: {fixed}")
    assert ok.exit_code == 0, ok.output


def test_qwen3_5_thinking_off_supervises_only_answers_and_asks_with_an_empty_think_block():
    from vlmtrain.data.chat import prompt

    processor = _processor("qwen3_5")  # thinking: off by default
    row = _decoded([_two_turns()])[0]
    batch = ChatCollator(processor=processor, max_length=512, family=FAMILIES["qwen3_5"])([row])
    tok = processor.tokenizer
    assert [tok.decode(r) for r in supervised_runs(batch["labels"][0].tolist())] == ["Both are MR<|im_end|>",
                                                                                      "axial<|im_end|>"]
    assert prompt(processor=processor, messages=row["messages"][:1]).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n")


def test_qwen3_5_thinking_keep_supervises_the_reasoning_with_the_answer():
    processor = _processor("qwen3_5", thinking="keep")
    row = _decoded([_two_turns(second="<think>\nThe slice is horizontal.\n</think>\n\naxial")])[0]
    batch = ChatCollator(processor=processor, max_length=512, family=FAMILIES["qwen3_5"])([row])
    tok = processor.tokenizer
    runs = [tok.decode(r) for r in supervised_runs(batch["labels"][0].tolist())]
    assert runs == ["Both are MR<|im_end|>", "<think>\nThe slice is horizontal.\n</think>\n\naxial<|im_end|>"]


def test_the_published_qwen3_5_template_is_refused_with_the_thinking_choice(colour_dataset, tmp_path):
    result = _validate(family="qwen3_5", data=colour_dataset, tmp_path=tmp_path, model_extra=", chat_template: qwen3_5")
    assert result.exit_code == 2 and "model.thinking: off or keep" in result.output, result.output
    bad = _validate(family="qwen3_5", data=colour_dataset, tmp_path=tmp_path, model_extra=", thinking: maybe")
    assert bad.exit_code == 2 and "model.thinking" in bad.output


def test_a_chat_template_name_that_is_not_shipped_gets_a_did_you_mean(colour_dataset, tmp_path):
    result = _validate(family="llava", data=colour_dataset, tmp_path=tmp_path, model_extra=", chat_template: llava-1.6")
    assert result.exit_code == 2 and "model.chat_template" in result.output and "llava-1.5" in result.output


def test_a_template_file_replaces_the_checkpoint_template(tmp_path):
    from vlmtrain.data.chat import shipped_template

    path = tmp_path / "mine.jinja"
    path.write_text(shipped_template("llava-1.5"), encoding="utf-8")
    processor = _processor("llava", chat_template=str(path))
    assert processor.chat_template == shipped_template("llava-1.5")


def test_gemma3_image_cut_is_found_on_the_expanded_soft_tokens():
    """Gemma 3's placeholder `<start_of_image>` expands to soft tokens; a cut through those is an image cut."""
    import datasets

    from vlmtrain.data.diagnostics import IMAGE_CUT, diagnose

    processor = _processor("gemma3")
    collator = ChatCollator(processor=processor, max_length=4096, family=FAMILIES["gemma3"])
    row = vqa_row(colour="red")
    full = collator(_decoded([row]))
    soft = processor.tokenizer.convert_tokens_to_ids("<image_soft_token>")
    first = full["input_ids"][0].tolist().index(soft)
    cut = ChatCollator(processor=processor, max_length=first + 2, family=FAMILIES["gemma3"])
    with pytest.raises(ValueError, match="would cut image tokens"):
        cut(_decoded([row]))
    from vlmdata.schema import features

    dataset = datasets.Dataset.from_list([row], features=features())
    assert diagnose(dataset=dataset, collator=cut).reasons == [IMAGE_CUT]
    assert (full["labels"][0][full["input_ids"][0] == soft] == IGNORE_INDEX).all()


@pytest.mark.parametrize(("family", "answer"), [("qwen2_5_vl", "end"), ("gemma3", "turn"), ("llava_next", "s"),
                                                ("mllama", "eot")])
def test_an_answer_that_is_part_of_the_end_of_turn_token_is_still_supervised_exactly(family, answer):
    processor = _processor(family)
    rows = _decoded([vqa_row(colour="red", answer=answer)])
    batch = ChatCollator(processor=processor, max_length=512, family=FAMILIES[family])(rows)
    tok = processor.tokenizer
    runs = supervised_runs(batch["labels"][0].tolist())
    assert len(runs) == 1 and tok.decode(runs[0][:-1]).strip() == answer


def test_a_row_the_chat_template_refuses_is_a_reject_not_a_crash():
    """Llama 3.2 Vision's template raises on a system message with an image: that row is rejected and counted."""
    import datasets

    from vlmdata.schema import features
    from vlmtrain.data.diagnostics import UNRENDERABLE, diagnose

    processor = _processor("mllama")
    with_system = make_row(images=[png(colour="red")], messages=[
        message("system", [text_part("Be brief.")]),
        message("user", [image_part(), text_part("Colour?")]),
        message("assistant", [text_part("red")]),
    ])
    rows = [vqa_row(colour="blue"), with_system, vqa_row(colour="green")]
    dataset = datasets.Dataset.from_list(rows, features=features())
    diag = diagnose(dataset=dataset, collator=ChatCollator(processor=processor, max_length=512,
                                                           family=FAMILIES["mllama"]))
    assert diag.reasons == [None, UNRENDERABLE, None] and diag.kept == [0, 2]
    assert diag.counts() == {UNRENDERABLE: 1}
