"""Every family is asked at inference exactly as it was trained: the generation prompt's tokens are the
training row's tokens up to the first supervised one; and PaliGemma (no chat template) evaluates and predicts."""

from __future__ import annotations

import io

import pytest
from tiny_cache import tiny_dir
from train_rows import vqa_row

from vlmtrain.data.collate import IGNORE_INDEX, ChatCollator
from vlmtrain.data.prompting import prompt_inputs
from vlmtrain.evaluation.evaluate import split_prompt
from vlmtrain.models.families import FAMILIES


def _row() -> dict:
    from PIL import Image

    row = vqa_row(colour="red", answer="red square")
    return {**row, "images": [Image.open(io.BytesIO(i["bytes"])).convert("RGB") for i in row["images"]]}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_the_generation_prompt_is_the_training_prompt(family):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(tiny_dir(family)))
    row = _row()
    train = ChatCollator(processor=processor, max_length=512, family=FAMILIES[family])([row])
    labels = train["labels"][0].tolist()
    first = next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)
    asked = prompt_inputs(processor=processor, family=FAMILIES[family], prompts=[split_prompt(row["messages"])[0]],
                          images=[row["images"]])
    assert asked["input_ids"][0].tolist() == train["input_ids"][0][:first].tolist()


def test_paligemma_evaluates_and_predicts(colour_dataset):
    import datasets
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from vlmtrain.evaluation.evaluate import evaluate
    from vlmtrain.evaluation.predict import generate

    folder = tiny_dir("paligemma")
    model = AutoModelForImageTextToText.from_pretrained(str(folder))
    processor = AutoProcessor.from_pretrained(str(folder))
    dataset = datasets.load_from_disk(str(colour_dataset))["train"].select(range(3))
    result = evaluate(model=model, processor=processor, dataset=dataset, max_new_tokens=3, batch_size=2)
    assert len(result.predictions) == 3 and all(isinstance(p["prediction"], str) for p in result.predictions)
    answer = generate(model=model, processor=processor, image=_row()["images"][0], prompt="Colour?",
                      max_new_tokens=3)
    assert 1 <= len(answer.token_ids) <= 3
