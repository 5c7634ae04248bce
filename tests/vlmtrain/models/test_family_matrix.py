"""Every family of the tiny table, the same checks: exact answer masks (single-turn, multi-turn, two-image,
text-only rows) ending in a token that stops generation, every parameter in a component, 2 LoRA steps
with a falling loss, QLoRA 4-bit with gradients reaching every adapter, eval and predict at batch size
> 1, and a merge whose logits equal the adapter model's.

Parametrised over `vlmtrain.models.tiny.registry.FAMILIES`: a family added there (with its `vlmtrain.models.families` entry)
is covered here with no new test code.
"""

from __future__ import annotations

import io
import json

import pytest
from tiny_cache import config_text, tiny_dir
from train_rows import make_row, png, save_dataset, supervised_runs, vqa_row

from vlmdata.schema import assistant_texts, image_part, message, text_part
from vlmtrain.data.collate import IGNORE_INDEX, ChatCollator
from vlmtrain.models.families import FAMILIES as TABLE
from vlmtrain.models.tiny.registry import FAMILIES

CHAT = sorted(name for name in FAMILIES if TABLE[name].prompt == "chat")
ALL = sorted(FAMILIES)


def _rows() -> list[dict]:
    """Single-turn, another single-turn, two images over two turns, and text only."""
    return [
        vqa_row(colour="red", answer="red square"),
        vqa_row(colour="blue", question="Colour?"),
        make_row(images=[png(colour="green"), png(colour="yellow", shape="circle")], messages=[
            message("user", [image_part(), text_part("Compare"), image_part(), text_part("these.")]),
            message("assistant", [text_part("Both are MR")]),
            message("user", [text_part("Which plane?")]),
            message("assistant", [text_part("axial")]),
        ]),
        make_row(images=[], messages=[message("user", [text_part("Is it CT?")]), message("assistant", [text_part("No")])]),
    ]


def _decoded(rows: list[dict]) -> list[dict]:
    from PIL import Image

    return [{**r, "images": [Image.open(io.BytesIO(i["bytes"])) for i in r["images"]]} for r in rows]


def _stops(family: str) -> set[int]:
    from transformers import GenerationConfig

    ids = GenerationConfig.from_pretrained(str(tiny_dir(family))).eos_token_id
    return set(ids if isinstance(ids, list) else [ids])


@pytest.fixture(scope="module")
def matrix_data(tmp_path_factory):
    rows = _rows()
    return save_dataset(path=tmp_path_factory.mktemp("matrix") / "rows", splits={"train": rows, "validation": rows})


def _processor(family: str, **model: object):
    """The processor as a run loads it (model.processor settings, model.chat_template / model.thinking)."""
    from vlmtrain.config.train import ModelSection
    from vlmtrain.models.load import load_processor

    return load_processor(model=ModelSection.model_validate({"path": str(tiny_dir(family)), **model}))


@pytest.mark.parametrize("family", CHAT)
def test_answers_are_supervised_exactly_and_end_with_a_stop_token(family):
    processor = _processor(family)
    rows = _decoded(_rows())
    batch = ChatCollator(processor=processor, max_length=4096, family=TABLE[family])(rows)
    tok = processor.tokenizer
    stops = _stops(family)
    for b, row in enumerate(rows):
        runs = supervised_runs(batch["labels"][b].tolist())
        answers = assistant_texts(row["messages"])
        assert len(runs) == len(answers), (family, b, [tok.decode(r) for r in runs])
        for run, answer in zip(runs, answers, strict=True):
            assert run[-1] in stops, (family, tok.decode(run))  # generation stops where training stopped
            text = tok.decode(run[:-1], skip_special_tokens=False)
            assert text.strip() == answer and text.lstrip() == text.strip(), (family, text)  # nothing but the answer
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()
    if tok.bos_token is not None:  # every row starts with BOS, written by the template or by vlmtrain.data.chat
        assert (batch["input_ids"][:, 0] == tok.bos_token_id).all()


@pytest.mark.parametrize("family", ALL)
def test_every_parameter_falls_into_a_component(family):
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(str(tiny_dir(family)))
    table = TABLE[family]
    table.check_coverage(n for n, _ in model.named_parameters())  # raises, naming what is left over
    parts = {table.component_of(n) for n, _ in model.named_parameters()}
    assert {"vision", "projector", "llm"} <= parts
    assert ("cross_attention" in parts) == bool(table.cross_attention)


def _run(*, family: str, data, write_config, tmp_path, body: str):
    from vlmtrain.config.train import load_train_config
    from vlmtrain.recipes.run import run

    path = write_config(config_text(model=tiny_dir(family), data=data, out=tmp_path / "run", body=body)
                        .replace("max_length: 128", "max_length: 1024"))
    return run(config=load_train_config(path), echo=lambda _: None)


@pytest.mark.slow  # ~10 s a family: one run, a reload, eval, predict and a merge (PaliGemma: test_families,
@pytest.mark.parametrize("family", CHAT)  # test_prompting and test_eval_merge, on one question per row)
def test_lora_steps_lower_the_loss_then_eval_predict_and_merge(family, matrix_data, write_config, tmp_path):
    import datasets
    import torch
    from PIL import Image
    from transformers import AutoModelForImageTextToText

    from vlmtrain.evaluation.evaluate import evaluate
    from vlmtrain.evaluation.predict import generate, load_run
    from vlmtrain.models.merge import merge_run

    body = ("lora: {r: 8, alpha: 16, dropout: 0.0}\n"
            "train: {steps: 2, batch_size: 4, lr: 2.0e-2, scheduler: constant, device: cpu}\n")
    run_dir = _run(family=family, data=matrix_data, write_config=write_config, tmp_path=tmp_path, body=body)
    losses = [json.loads(line)["loss"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and losses[1] < losses[0], losses  # the same 4 rows twice: the loss must fall

    model, processor = load_run(run_dir=run_dir, device="cpu")
    rows = datasets.load_from_disk(str(matrix_data))["validation"]
    result = evaluate(model=model, processor=processor, dataset=rows, max_new_tokens=3, batch_size=4)
    assert [p["id"] for p in result.predictions] == rows["id"]  # every row of a mixed batch answered
    image = Image.open(io.BytesIO(png(colour="red")))
    answer = generate(model=model, processor=processor, image=image, prompt="Colour?", max_new_tokens=3)
    assert 1 <= len(answer.token_ids) <= 3

    merged_dir = merge_run(run_dir=run_dir, out=tmp_path / "merged")
    merged = AutoModelForImageTextToText.from_pretrained(str(merged_dir)).eval()
    batch = ChatCollator(processor=processor, max_length=4096, family=TABLE[family])(_decoded(_rows()[:2]))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        expected, got = model(**inputs).logits, merged(**inputs).logits
    assert torch.allclose(expected, got, atol=1e-4), (expected - got).abs().max()


@pytest.mark.slow
@pytest.mark.parametrize("family", ALL)
def test_qlora_4bit_gradients_reach_every_adapter(family, matrix_data, colour_dataset, write_config, tmp_path):
    from vlmtrain.config.train import load_train_config
    from vlmtrain.recipes.finetune import FinetuneRecipe

    chat = TABLE[family].prompt == "chat"
    data, rows = (matrix_data, _rows()) if chat else (colour_dataset, _rows()[:2])  # prefix/suffix: one Q + one A
    body = ("method: qlora\nquant: {bits: 4}\nlora: {r: 8, alpha: 16, dropout: 0.0}\n"
            "train: {steps: 1, batch_size: 4, lr: 1.0e-2, device: cpu}\n")
    path = write_config(config_text(model=tiny_dir(family), data=data, out=tmp_path / "run", body=body)
                        .replace("max_length: 128", "max_length: 1024"))
    recipe = FinetuneRecipe(config=load_train_config(path), echo=lambda _: None)
    recipe.setup()
    model = recipe.model
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
    model.train()
    batch = recipe.collator(_decoded(rows))
    model(**batch).loss.backward()
    lora_b = {n: p for n, p in model.named_parameters() if "lora_B" in n}
    dead = [n for n, p in lora_b.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert lora_b and not dead, dead[:3]


def test_mllama_cross_attention_is_its_own_component_with_its_own_rank(matrix_data, write_config, tmp_path):
    from vlmtrain.config.train import load_train_config
    from vlmtrain.models.build import build_model

    body = ("components:\n  llm: {train: lora, r: 4}\n  cross_attention: {train: lora, r: 16, lr: 1.0e-4}\n"
            "train: {steps: 1, device: cpu}\n")
    path = write_config(config_text(model=tiny_dir("mllama"), data=matrix_data, out=tmp_path / "run", body=body))
    built = build_model(config=load_train_config(path))
    ranks = {}
    for name, module in built.model.named_modules():
        if name.endswith(".lora_A.default"):
            ranks[name] = module.out_features
    cross = {r for n, r in ranks.items() if ".cross_attn." in n}
    other = {r for n, r in ranks.items() if ".cross_attn." not in n}
    assert cross == {16} and other == {4}
    groups = {g["component"]: g["lr"] for g in built.groups}
    assert groups["cross_attention"] == 1.0e-4
    assert "cross_attention" in built.table()


def test_a_component_the_family_lacks_is_a_config_error(matrix_data, write_config, tmp_path):
    from vlmdata.config.errors import ConfigError
    from vlmtrain.config.train import load_train_config
    from vlmtrain.models.build import build_model

    body = "components:\n  cross_attention: {train: lora, r: 16}\ntrain: {steps: 1, device: cpu}\n"
    path = write_config(config_text(model=tiny_dir("qwen2_5_vl"), data=matrix_data, out=tmp_path / "run", body=body))
    with pytest.raises(ConfigError, match="family 'qwen2_5_vl' has no cross_attention component"):
        build_model(config=load_train_config(path))
