"""The collator supervises exactly the assistant answers (+ end-of-turn), never prompts, images or padding."""

from __future__ import annotations

from typing import Any

import pytest
from train_rows import make_row, png, supervised_runs, vqa_row

from vlmdata.schema import assistant_texts, image_part, message, text_part
from vlmtrain.data.collate import IGNORE_INDEX, ChatCollator, assistant_spans

IMAGE_TOKENS_PER_IMAGE = 16  # tiny LLaVA: 32 px / patch 8 = 4 x 4




def _rows() -> list[dict[str, Any]]:
    """Multi-turn with a system prompt; two images in one turn; no image; an answer repeated in the prompt."""
    system = message("system", [text_part("You are a radiology assistant.")])
    return [
        make_row(
            images=[png(colour="red")],
            messages=[
                system,
                message("user", [image_part(), text_part("What modality is this scan?")]),
                message("assistant", [text_part("CT")]),
                message("user", [text_part("Which plane? Answer axial chest if unsure.")]),
                message("assistant", [text_part("axial chest")]),
            ],
        ),
        make_row(
            images=[png(colour="blue"), png(colour="green", shape="circle")],
            messages=[
                message("user", [image_part(), text_part("Compare"), image_part(), text_part("these.")]),
                message("assistant", [text_part("Both are MR, 3 mm slices.")]),
            ],
        ),
        make_row(
            images=[],
            messages=[
                message("user", [text_part("Say CT")]),
                message("assistant", [text_part("CT")]),
            ],
        ),
    ]


def _decoded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows as the Trainer hands them over: images decoded to PIL (as `datasets` does)."""
    import io

    from PIL import Image

    return [{**r, "images": [Image.open(io.BytesIO(i["bytes"])) for i in r["images"]]} for r in rows]


def test_only_assistant_answers_and_end_of_turn_are_supervised(llava_processor):
    rows = _rows()
    batch = ChatCollator(processor=llava_processor, max_length=512)(_decoded(rows))
    tok = llava_processor.tokenizer
    eos = tok.eos_token

    assert batch["pixel_values"].shape[0] == 3  # 1 + 2 + 0 images, in order
    for b, row in enumerate(rows):
        runs = supervised_runs(batch["labels"][b].tolist())
        decoded = [tok.decode(run, skip_special_tokens=False) for run in runs]
        assert decoded == [answer + eos for answer in assistant_texts(row["messages"])]


def test_padding_and_image_tokens_are_never_supervised(llava_processor):
    rows = _rows()
    batch = ChatCollator(processor=llava_processor, max_length=512)(_decoded(rows))
    ids, labels, mask = batch["input_ids"], batch["labels"], batch["attention_mask"]
    image_id = llava_processor.image_token_id

    assert (mask == 0).any(), "rows of different lengths must be padded"
    assert (labels[mask == 0] == IGNORE_INDEX).all()
    assert (ids[mask == 0] == llava_processor.tokenizer.pad_token_id).all()
    assert (labels[ids == image_id] == IGNORE_INDEX).all()
    per_row = (ids == image_id).sum(dim=1).tolist()
    assert per_row == [IMAGE_TOKENS_PER_IMAGE * len(r["images"]) for r in rows]
    # supervised positions hold the input ids themselves (the model shifts them)
    supervised = labels != IGNORE_INDEX
    assert (labels[supervised] == ids[supervised]).all()


def test_spans_cover_answer_and_end_of_turn(llava_processor):
    messages = _rows()[0]["messages"]
    text, spans = assistant_spans(processor=llava_processor, messages=messages)
    assert [text[s:e] for s, e in spans] == ["CT</s>", "axial chest</s>"]
    assert text.endswith("axial chest</s>")


def test_truncation_keeps_the_mask_and_refuses_to_cut_images(llava_processor):
    rows = _decoded([vqa_row(colour="red", answer="red square on a grey background")])
    full = ChatCollator(processor=llava_processor, max_length=512)(rows)
    length = int(full["attention_mask"].sum())
    cut = ChatCollator(processor=llava_processor, max_length=length - 2)(rows)
    assert cut["input_ids"].shape[1] == length - 2
    assert cut["labels"].tolist()[0] == full["labels"].tolist()[0][: length - 2]

    with pytest.raises(ValueError, match="data.max_length=8 would cut image tokens"):
        ChatCollator(processor=llava_processor, max_length=8)(rows)


def test_image_count_mismatch_names_the_row(llava_processor):
    row = _decoded([vqa_row(colour="red")])[0]
    row["images"] = row["images"] * 2
    with pytest.raises(ValueError, match=f"row {row['id']}: 1 image part"):
        ChatCollator(processor=llava_processor, max_length=512)([row])


def test_rows_from_a_saved_dataset_collate(llava_processor, colour_dataset):
    from vlmtrain.data.dataset import open_split

    dataset = open_split(path=colour_dataset, split="train")
    batch = ChatCollator(processor=llava_processor, max_length=512)([dataset[0], dataset[1]])
    tok = llava_processor.tokenizer
    for b in range(2):
        runs = supervised_runs(batch["labels"][b].tolist())
        expected = assistant_texts(dataset[b]["messages"])
        assert [tok.decode(r, skip_special_tokens=False) for r in runs] == [a + tok.eos_token for a in expected]
