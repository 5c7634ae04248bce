"""`distributed:` strategies map onto the Trainer's own FSDP / DeepSpeed settings, QLoRA under FSDP stores 4-bit
weights in the compute dtype, ranks load onto their own GPU, and the real-size benchmark's CPU-safe part runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from tiny_cache import config_text, tiny_dir

ROOT = Path(__file__).resolve().parents[3]


def _config(*, body: str, data, write_config, tmp_path):
    from vlmtrain.config.train import load_train_config

    return load_train_config(write_config(config_text(model=tiny_dir("llava"), data=data, out=tmp_path / "run",
                                                      body=body)))


def test_fsdp_and_deepspeed_become_trainer_arguments(colour_dataset, write_config, tmp_path):
    from vlmtrain.training.trainer import training_arguments

    cfg = _config(body="distributed: {strategy: fsdp}\ntrain: {steps: 1, device: cpu}\n", data=colour_dataset,
                  write_config=write_config, tmp_path=tmp_path)
    args = training_arguments(config=cfg, layer_classes=["LlamaDecoderLayer"])
    assert args.fsdp_config["transformer_layer_cls_to_wrap"] == ["LlamaDecoderLayer"]
    assert args.fsdp_config["auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    import importlib.util

    from vlmdata.config.errors import ConfigError
    from vlmtrain.config.distributed import DistributedSection, trainer_arguments

    # the ZeRO mapping is pure; validation additionally needs the package (an extra, not in the test set)
    zero = trainer_arguments(section=DistributedSection(strategy="deepspeed_zero3"),
                             layer_classes=[])["deepspeed"]["zero_optimization"]
    if importlib.util.find_spec("deepspeed") is None:
        with pytest.raises(ConfigError, match=r"distributed.strategy: deepspeed_zero3 needs the deepspeed package"):
            _config(body="distributed: {strategy: deepspeed_zero3}\ntrain: {steps: 1}\n", data=colour_dataset,
                    write_config=write_config, tmp_path=tmp_path)
    else:
        assert _config(body="distributed: {strategy: deepspeed_zero3}\ntrain: {steps: 1}\n", data=colour_dataset,
                       write_config=write_config, tmp_path=tmp_path).distributed.strategy == "deepspeed_zero3"
    assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"] is True
    assert training_arguments(config=_config(body="train: {steps: 1, device: cpu}\n", data=colour_dataset,
                                             write_config=write_config, tmp_path=tmp_path)).fsdp in ([], "", None, False)


def test_an_unknown_strategy_is_a_config_error(colour_dataset, write_config, tmp_path):
    from vlmdata.config.errors import ConfigError

    with pytest.raises(ConfigError, match="distributed.strategy"):
        _config(body="distributed: {strategy: zero3}\n", data=colour_dataset, write_config=write_config,
                tmp_path=tmp_path)


def test_qlora_under_fsdp_stores_4bit_weights_in_the_compute_dtype():
    import torch

    from vlmtrain.config.tuning import QuantSection
    from vlmtrain.models.quant import bnb_config

    quant = QuantSection(compute_dtype="bfloat16")
    assert bnb_config(quant=quant, skip=[], storage="bfloat16").bnb_4bit_quant_storage == torch.bfloat16
    assert bnb_config(quant=quant, skip=[]).bnb_4bit_quant_storage == torch.uint8


def test_each_rank_loads_onto_its_own_gpu(monkeypatch):
    import torch

    from vlmtrain.models import load as model_module

    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert model_module._local_device() == {"device_map": {"": 3}}
    monkeypatch.delenv("LOCAL_RANK")
    assert model_module._local_device() == {}


def test_realsize_benchmark_builds_every_real_config_on_the_meta_device():
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_realsize.py"), "--dry-run"],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert set(lines) == {"qwen2_5_vl-7b", "qwen3_vl-8b", "gemma3-12b", "mllama-11b"}
    assert " 8.29 B params" in lines["qwen2_5_vl-7b"]  # the published parameter count of Qwen2.5-VL-7B
    assert "cross_attention" in lines["mllama-11b"]


def test_every_family_has_a_ready_recipe_for_a_real_checkpoint_that_validates(colour_dataset):
    from vlmtrain.config.train import load_train_config
    from vlmtrain.models.families import FAMILIES

    recipes = {}
    for path in sorted((ROOT / "recipes" / "train").glob("*.yaml")):
        header = path.read_text(encoding="utf-8").splitlines()
        if len(header) > 2 and header[0] == f"# vlmtrain run recipes/train/{path.name}" and ": " in header[2]:
            family = header[2].removeprefix("# ").split(":")[0]
            if family in FAMILIES:
                recipes[family] = path
    assert set(recipes) == set(FAMILIES)
    for family, path in recipes.items():
        config = load_train_config(path, overrides=[f"data.path={colour_dataset}"])
        assert isinstance(config.model.path, str) and "/" in config.model.path, family  # a hub id
