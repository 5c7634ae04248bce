"""The training config: all problems at once, YAML paths, did-you-mean, paths against the file's folder."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from vlmdata.config.errors import ConfigError
from vlmtrain.cli import main
from vlmtrain.config.train import load_train_config

RECIPES = Path(__file__).resolve().parents[3] / "recipes" / "train"


def _problems(err: pytest.ExceptionInfo[ConfigError]) -> dict[str, str]:
    return {p.path: p.message for p in err.value.problems}


def test_valid_config_resolves_paths_against_its_folder(tiny_llava, colour_dataset, tmp_path, monkeypatch):
    folder = tmp_path / "configs" / "nested"
    folder.mkdir(parents=True)
    (folder / "train.yaml").write_text(
        f"name: toy\nmodel: {{path: {tiny_llava}}}\ndata: {{path: ../../data}}\noutput: {{dir: ../out}}\n"
    )
    (tmp_path / "data").symlink_to(colour_dataset, target_is_directory=True)
    monkeypatch.chdir(tmp_path)

    cfg = load_train_config(folder / "train.yaml")
    assert cfg.data.path == (tmp_path / "data").resolve()
    assert cfg.run_dir == (tmp_path / "configs" / "out").resolve()
    assert cfg.train.epochs == 1.0 and cfg.train.steps is None  # default: one epoch
    assert cfg.lora.targets == "all-linear"

    default = load_train_config(folder / "train.yaml", overrides=["output.dir=null", "train.steps=3"])
    assert default.run_dir == tmp_path.resolve() / "runs" / "toy"  # runs/NAME under the current folder
    assert default.train.steps == 3


def test_every_problem_is_reported_at_once_with_path_and_hint(tiny_llava, colour_dataset, write_config):
    path = write_config(
        f"""
name: toy
model: {{path: {tiny_llava}, trust_remote_cod: true}}
data: {{path: {colour_dataset}, split: trian}}
lora: {{rank: 4, targets: all_linear}}
train: {{steps: 10, epochs: 2, lr: -1, scheduler: cosin}}
trian: {{}}
"""
    )
    with pytest.raises(ConfigError) as err:
        load_train_config(path)
    problems = _problems(err)
    assert "did you mean 'trust_remote_code'" in problems["model.trust_remote_cod"]
    assert "no split 'trian'" in problems["data.split"] and "did you mean 'train'" in problems["data.split"]
    assert problems["lora.rank"] == "unknown key 'rank' (allowed: alpha, dropout, r, targets)"
    assert "did you mean 'all-linear'" in problems["lora.targets"]
    assert "greater than 0" in problems["train.lr"]
    assert "did you mean 'cosine'" in problems["train.scheduler"]
    assert "did you mean 'train'" in problems["trian"]
    assert len(err.value.problems) == 7
    assert str(path) in str(err.value)


def test_missing_files_are_problems_too(write_config, tmp_path):
    path = write_config("name: toy\nmodel: {path: no-such-model}\ndata: {path: ../nowhere}\ntrain: {steps: 0}\n")
    with pytest.raises(ConfigError) as err:
        load_train_config(path)
    problems = _problems(err)
    assert f"model folder not found: {tmp_path / 'no-such-model'}" in problems["model.path"]
    assert "vlmtrain tiny" in problems["model.path"]
    assert f"dataset folder not found: {(tmp_path / '../nowhere').resolve()}" in problems["data.path"]
    assert "greater than 0" in problems["train.steps"]


def test_steps_and_epochs_are_exclusive_and_set_overrides_apply(tiny_llava, colour_dataset, write_config):
    path = write_config(f"name: toy\nmodel: {{path: {tiny_llava}}}\ndata: {{path: {colour_dataset}}}\n")
    with pytest.raises(ConfigError) as err:
        load_train_config(path, overrides=["train.steps=5", "train.epochs=2", "name=bad name"])
    problems = _problems(err)
    assert "either train.steps or train.epochs" in problems["train"]
    assert "name" in problems


def test_cli_prints_problems_to_stderr_and_exits_2(write_config):
    path = write_config("name: toy\nmodel: {path: missing}\ndata: {path: missing}\nlora: {alpah: 2}\n")
    result = CliRunner().invoke(main, ["run", str(path), "--set", "train.lr=0"])
    assert result.exit_code == 2
    assert "4 problem(s)" in result.stderr
    for where in ("model.path", "data.path", "lora.alpah: unknown key 'alpah'; did you mean 'alpha'?", "train.lr"):
        assert where in result.stderr


def test_shipped_recipes_validate(tiny_llava, colour_dataset):
    recipes = sorted(RECIPES.glob("*.yaml"))
    assert recipes, "recipes/train/*.yaml must exist"
    for recipe in recipes:  # the model and data they name are built separately; point them at test ones
        import yaml  # stages that read their own data get the test data too

        stages = yaml.safe_load(recipe.read_text()).get("stages") or []
        own = [f"stages.{i}.data.path={colour_dataset}" for i, s in enumerate(stages) if "data" in s]
        cfg = load_train_config(recipe, overrides=[f"model.path={tiny_llava}", f"data.path={colour_dataset}", *own])
        assert cfg.name == recipe.stem and cfg.model.path == tiny_llava
