"""Settings a real model needs: dtype auto, attention, processor settings per family, unsupported families
and unreachable hub ids refused in `vlmtrain validate` (config.json only), and parameters with no component."""

from __future__ import annotations

import dataclasses
import json

import pytest
from click.testing import CliRunner
from tiny_cache import config_text, tiny_dir

from vlmtrain.models.families import FAMILIES, UncoveredParameter


def _validate(*, model: str, data, tmp_path, extra: str = ""):
    from vlmtrain.cli import main

    text = config_text(model=model, data=data, out=tmp_path / "run", body="")
    text = text.replace(f"model: {{path: {model}}}", f"model: {{path: {model}{extra}}}")
    path = tmp_path / "train.yaml"
    path.write_text(text, encoding="utf-8")
    return CliRunner().invoke(main, ["validate", str(path)])


def test_dtype_auto_is_fp32_on_the_cpu_and_explicit_dtypes_stay():
    from vlmtrain.config.train import ModelSection
    from vlmtrain.models.load import resolve_dtype

    assert ModelSection.model_validate({"path": str(tiny_dir("llava"))}).dtype == "auto"
    assert resolve_dtype(dtype="auto", cpu=True) == "float32"
    assert resolve_dtype(dtype="bfloat16", cpu=True) == "bfloat16"


def test_an_unsupported_model_type_is_refused_from_config_json_listing_the_families(colour_dataset, tmp_path):
    folder = tmp_path / "blip"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "blip-2"}), encoding="utf-8")
    result = _validate(model=str(folder), data=colour_dataset, tmp_path=tmp_path)
    assert result.exit_code == 2
    assert "model type 'blip-2'" in result.output and "qwen2_5_vl" in result.output and "mllama" in result.output


def test_an_unreachable_hub_id_is_one_paragraph_naming_model_cause_and_fix(colour_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = _validate(model="no-such-org/no-such-vlm-7b", data=colour_dataset, tmp_path=tmp_path)
    assert result.exit_code == 2, result.output
    assert "no-such-org/no-such-vlm-7b" in result.output and "HF_HUB_OFFLINE" in result.output
    assert "local folder" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3


def test_processor_settings_are_checked_per_family(colour_dataset, tmp_path):
    model = str(tiny_dir("qwen2_5_vl"))
    ok = _validate(model=model, data=colour_dataset, tmp_path=tmp_path, extra=", processor: {max_pixels: 12544}")
    assert ok.exit_code == 0, ok.output
    typo = _validate(model=model, data=colour_dataset, tmp_path=tmp_path, extra=", processor: {max_pixel: 12544}")
    assert typo.exit_code == 2 and "did you mean 'max_pixels'" in typo.output
    bad = _validate(model=model, data=colour_dataset, tmp_path=tmp_path,
                    extra=", processor: {min_pixels: 9000, max_pixels: 3136}")
    assert bad.exit_code == 2 and "above max_pixels" in bad.output
    smol = _validate(model=str(tiny_dir("smolvlm")), data=colour_dataset, tmp_path=tmp_path,
                     extra=", processor: {image_seq_len: 9}")
    assert smol.exit_code == 2 and "gives 4 tokens per image" in smol.output
    llava = _validate(model=str(tiny_dir("llava")), data=colour_dataset, tmp_path=tmp_path,
                      extra=", processor: {max_pixels: 100}")
    assert llava.exit_code == 2 and "has no processor setting 'max_pixels'" in llava.output


def test_qwen_images_are_capped_by_default_and_settings_apply():
    from transformers import AutoProcessor

    from vlmtrain.config.processor import QWEN_MAX_PIXELS, apply

    processor = AutoProcessor.from_pretrained(str(tiny_dir("qwen2_5_vl")))
    processor.image_processor.size = {"shortest_edge": 3136, "longest_edge": 12845056}  # the checkpoint's own
    apply(family=FAMILIES["qwen2_5_vl"], settings={}, processor=processor)
    assert processor.image_processor.size == {"shortest_edge": 3136, "longest_edge": QWEN_MAX_PIXELS}
    apply(family=FAMILIES["qwen2_5_vl"], settings={"max_pixels": 12544}, processor=processor)
    assert processor.image_processor.size["longest_edge"] == 12544
    smol = AutoProcessor.from_pretrained(str(tiny_dir("smolvlm")))
    apply(family=FAMILIES["smolvlm"], settings={"do_image_splitting": True, "longest_edge": 64}, processor=smol)
    assert smol.image_processor.do_image_splitting is True and smol.image_processor.size == {"longest_edge": 64}


def test_a_parameter_no_prefix_covers_names_itself_and_the_family():
    from transformers import AutoModelForImageTextToText

    from vlmtrain.config.train import LoraSection
    from vlmtrain.config.tuning import ComponentSection, ComponentsSection, resolve_components
    from vlmtrain.models.tuning import apply_plan

    model = AutoModelForImageTextToText.from_pretrained(str(tiny_dir("llava")))
    broken = dataclasses.replace(FAMILIES["llava"], projector=())
    with pytest.raises(UncoveredParameter, match=r"family 'llava'.*model\.multi_modal_projector\.linear_1\.weight"):
        broken.component_of("model.multi_modal_projector.linear_1.weight")
    plan = resolve_components(components=ComponentsSection(llm=ComponentSection()), lora=LoraSection(), method="lora",
                              lr=1e-4)
    with pytest.raises(UncoveredParameter, match="parameter\\(s\\) of family 'llava' fall into no component"):
        apply_plan(model=model, family=broken, plan=plan, seed=0)


def test_diagnostics_count_the_image_tokens_each_row_expands_to_under_the_processor_settings():
    import datasets
    from train_rows import vqa_row

    from vlmdata.schema import features
    from vlmtrain.config.train import ModelSection
    from vlmtrain.data.collate import ChatCollator
    from vlmtrain.data.diagnostics import diagnose
    from vlmtrain.models.load import load_processor

    dataset = datasets.Dataset.from_list([vqa_row(colour="red", question="x" * 3)], features=features())
    counts = {}
    for pixels in (3136, 12544):  # 56 x 56 px -> 2 x 2 merged tokens; 112 x 112 px -> 4 x 4
        section = ModelSection.model_validate({"path": str(tiny_dir("qwen2_5_vl")),
                                               "processor": {"min_pixels": pixels, "max_pixels": pixels}})
        collator = ChatCollator(processor=load_processor(model=section), max_length=512,
                                family=FAMILIES["qwen2_5_vl"])
        diag = diagnose(dataset=dataset, collator=collator)
        counts[pixels] = diag.image_tokens[0]
        assert diag.table().splitlines()[0].split()[6] == "img_tok_max"
    # the image tokens plus <|vision_start|> and <|vision_end|>
    assert counts == {3136: 4 + 2, 12544: 16 + 2}


def test_bf16_lora_keeps_fp32_master_weights_for_fully_trained_components(colour_dataset, write_config, tmp_path):
    import torch

    from vlmtrain.config.train import load_train_config
    from vlmtrain.models.build import build_model

    body = ("components: {projector: {train: full}, llm: {train: lora, r: 4}}\n"
            "train: {steps: 1, device: cpu, precision: bf16}\n")
    text = config_text(model=tiny_dir("llava"), data=colour_dataset, out=tmp_path / "run", body=body)
    path = write_config(text.replace("model: {path: ", "model: {dtype: bfloat16, path: "))
    model = build_model(config=load_train_config(path)).model
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    assert {d for n, d in dtypes.items() if "multi_modal_projector" in n} == {torch.float32}
    assert {d for n, d in dtypes.items() if ".vision_tower." in n} == {torch.bfloat16}  # frozen: stays bf16
