"""The recipe skeleton: every kind of run is picked by its config and shares the single run's steps, so what
one kind checks (the model, the processor settings, the chat template) every kind checks, before any data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vlmdata.config.errors import ConfigError
from vlmtrain.config.train import validate_train_config
from vlmtrain.recipes.continual import ContinualRecipe
from vlmtrain.recipes.dpo import DpoRecipe
from vlmtrain.recipes.finetune import FinetuneRecipe
from vlmtrain.recipes.run import recipe_for
from vlmtrain.recipes.staged import StagedRecipe

CONTINUAL = {"continual": {"sequence": [{"name": "colour", "tasks": ["vqa"]}]}}


def _config(tmp_path: Path, tiny_llava: Path, colour_dataset: Path, **extra: Any) -> Any:
    doc = {"name": "r", "model": {"path": str(tiny_llava)}, "data": {"path": str(colour_dataset)},
           "output": {"dir": str(tmp_path / "run")}, **extra}
    return validate_train_config(doc, base_dir=tmp_path)


def test_each_kind_of_run_gets_its_recipe(tiny_llava, colour_dataset, tmp_path):
    cases = [(FinetuneRecipe, {}), (DpoRecipe, {"method": "dpo"}), (ContinualRecipe, CONTINUAL),
             (StagedRecipe, {"stages": [{"name": "a"}, {"name": "b"}]})]
    for kind, extra in cases:
        assert type(recipe_for(config=_config(tmp_path, tiny_llava, colour_dataset, **extra))) is kind, kind
    with pytest.raises(ValueError, match="DpoRecipe"):  # a DPO config never trains as SFT by mistake
        FinetuneRecipe(config=_config(tmp_path, tiny_llava, colour_dataset, method="dpo"))
    with pytest.raises(ConfigError) as err:
        recipe_for(config=_config(tmp_path, tiny_llava, colour_dataset, **CONTINUAL), resume=True)
    assert err.value.problems[0].path == "continual"


@pytest.mark.parametrize("extra", [{}, CONTINUAL, {"method": "dpo"}], ids=["single", "continual", "dpo"])
def test_every_kind_checks_the_model_before_it_writes_or_reads_anything(tiny_llava, colour_dataset, tmp_path, extra):
    cfg = _config(tmp_path, tiny_llava, colour_dataset, **extra)
    cfg.model.thinking = "keep"  # llava has no thinking template: refused by the shared model check
    with pytest.raises(ConfigError) as err:
        recipe_for(config=cfg).setup()
    assert [p.path for p in err.value.problems] == ["model.thinking"]
    assert not (tmp_path / "run").exists()  # refused before the run folder (or any data) was touched
