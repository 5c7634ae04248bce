"""`train.kernels: liger` is refused before any work where it cannot run (CPU, no CUDA, no liger-kernel, runs
that read the step's logits), all problems at once with their YAML paths; `none` leaves the Trainer alone."""

from __future__ import annotations

import importlib.util

import pytest
from click.testing import CliRunner

from vlmdata.config.errors import ConfigError
from vlmtrain.cli import main
from vlmtrain.config.train import validate_train_config


def _config(tiny_llava, colour_dataset, tmp_path, **train):
    return {"name": "k", "model": {"path": str(tiny_llava)}, "data": {"path": str(colour_dataset)},
            "train": {"steps": 1, **train}, "output": {"dir": str(tmp_path / "out")}}


def test_liger_on_cpu_is_refused_with_every_problem_at_once(tiny_llava, colour_dataset, tmp_path):
    data = {**_config(tiny_llava, colour_dataset, tmp_path, kernels="liger", device="cpu"), "multitask": {}}
    with pytest.raises(ConfigError) as err:
        validate_train_config(data, base_dir=tmp_path)
    messages = [p.message for p in err.value.problems if p.path == "train.kernels"]
    assert any("GPU only" in m and "train.device is cpu" in m for m in messages)
    assert any("multitask" in m and "logits" in m for m in messages)
    if importlib.util.find_spec("liger_kernel") is None:
        assert any("pip install 'vlmdata[liger]'" in m for m in messages)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_liger_without_a_cuda_device_is_refused_at_validate(tiny_llava, colour_dataset, tmp_path):
    cfg = tmp_path / "k.yaml"
    cfg.write_text(f"name: k\nmodel: {{path: {tiny_llava}}}\ndata: {{path: {colour_dataset}}}\n"
                   "train: {steps: 1, kernels: liger}\n")
    result = CliRunner().invoke(main, ["validate", str(cfg)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "train.kernels" in result.output and "no CUDA device" in result.output


def test_a_stage_asking_for_liger_is_refused_at_its_own_path(tiny_llava, colour_dataset, tmp_path):
    data = {**_config(tiny_llava, colour_dataset, tmp_path, device="cpu"),
            "stages": [{"name": "a"}, {"name": "b", "train": {"kernels": "liger"}}]}
    with pytest.raises(ConfigError) as err:
        validate_train_config(data, base_dir=tmp_path)
    assert "stages[1].train.kernels" in {p.path for p in err.value.problems}


def test_an_unknown_kernel_names_the_choices(tiny_llava, colour_dataset, tmp_path):
    with pytest.raises(ConfigError) as err:
        validate_train_config(_config(tiny_llava, colour_dataset, tmp_path, kernels="ligr"), base_dir=tmp_path)
    text = str(err.value)
    assert "train.kernels" in text and "liger" in text


def test_no_kernels_leave_the_trainer_unpatched(tiny_llava, colour_dataset, tmp_path):
    from vlmtrain.training.trainer import training_arguments

    config = validate_train_config(_config(tiny_llava, colour_dataset, tmp_path, device="cpu"), base_dir=tmp_path)
    assert config.train.kernels == "none"
    assert training_arguments(config=config).use_liger_kernel is False
    liger = config.model_copy(update={"train": config.train.model_copy(update={"kernels": "liger"})})
    assert training_arguments(config=liger).use_liger_kernel is True  # what a GPU run hands the Trainer
