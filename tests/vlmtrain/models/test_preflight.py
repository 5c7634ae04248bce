"""`vlmtrain validate` finds LoRA target typos and rows that cannot train at max_length from the model's
config.json and processor alone, never its weights (here: a model folder whose weight file is broken),
and never prints a traceback; `vlmtrain run` finds target typos before it reads a weight."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from vlmtrain.cli import main


@pytest.fixture(scope="module")
def weightless(tiny_llava: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny LLaVA's config, processor and chat template, with a weight file that cannot be read."""
    out = tmp_path_factory.mktemp("weightless") / "llava"
    shutil.copytree(tiny_llava, out)
    weights = list(out.glob("*.safetensors"))
    assert weights
    for path in weights:
        path.write_bytes(b"not safetensors")
    return out


def _validate(write_config, text: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", str(write_config(text))])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_target_typos_are_found_without_weights(weightless, colour_dataset, write_config):
    code, out = _validate(write_config, f"name: t\nmodel: {{path: {weightless}}}\ndata: {{path: {colour_dataset}}}\n"
                                        "lora: {targets: [q_prj, v_proj]}\n")
    assert code == 2, out
    assert "lora.targets: no linear layer 'q_prj' in the llm; did you mean 'q_proj'?" in out
    assert "v_proj'" not in out.split("linear layers")[0]  # the right name is not a problem

    code, out = _validate(write_config, f"name: t\nmodel: {{path: {weightless}}}\ndata: {{path: {colour_dataset}}}\n"
                                        "components: {llm: {train: lora}, vision: {train: lora, targets: [fc9]}}\n")
    assert code == 2, out
    assert "components.vision.targets: no linear layer 'fc9' in the vision; did you mean" in out


def test_rows_that_cannot_train_at_max_length_are_found(weightless, colour_dataset, write_config):
    code, out = _validate(write_config, f"name: t\nmodel: {{path: {weightless}}}\n"
                                        f"data: {{path: {colour_dataset}, max_length: 8}}\n")
    assert code == 2, out
    assert "data.max_length: all 16 rows checked of" in out and "image_cut" in out

    code, out = _validate(write_config, f"name: t\nmodel: {{path: {weightless}}}\ndata: {{path: {colour_dataset}}}\n")
    assert code == 0 and ": ok (run folder:" in out, out


@pytest.mark.parametrize("body", ["data: {path: null}", "data: null", "data: {path: [1, 2]}", "data: 7",
                                  "data: {sources: [{path: null}]}", "data: {path: ~nouser_xyz/d}"])
def test_malformed_data_sections_are_named_problems(tiny_llava, write_config, body):
    code, out = _validate(write_config, f"name: t\nmodel: {{path: {tiny_llava}}}\n{body}\n")
    assert code == 2 and "data" in out and "problem(s)" in out, out


def test_model_path_null_is_a_named_problem(colour_dataset, write_config):
    code, out = _validate(write_config, f"name: t\nmodel: {{path: null}}\ndata: {{path: {colour_dataset}}}\n")
    assert code == 2 and "model.path: needs a model folder or a hub id" in out, out


def test_run_finds_a_target_typo_before_reading_weights(weightless, colour_dataset, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(f"name: t\nmodel: {{path: {weightless}}}\ndata: {{path: {colour_dataset}}}\n"
                      f"lora: {{targets: [q_prj]}}\ntrain: {{steps: 1, device: cpu}}\noutput: {{dir: {tmp_path / 'r'}}}\n")
    result = CliRunner().invoke(main, ["run", str(config)])
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert "lora.targets: no linear layer 'q_prj'" in result.output
