"""The efficacy benchmark's shipped configs and recipes validate (the benchmark itself: benchmarks/efficacy)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlmtrain.config.train import load_train_config

ROOT = Path(__file__).resolve().parents[3]
EFFICACY = sorted((ROOT / "recipes" / "train").glob("efficacy-*.yaml"))
SHAPES = sorted((ROOT / "recipes").glob("shapes*.yaml"))


@pytest.mark.parametrize("path", EFFICACY, ids=lambda p: p.name)
def test_efficacy_configs_validate(path, tiny_llava, tmp_path):
    from train_rows import COLOURS, save_dataset, vqa_row

    rows = [{**vqa_row(colour=c), "task": t} for c in COLOURS for t in ("color", "shape", "count", "caption")]
    data = save_dataset(path=tmp_path / "data", splits={"train": rows, "validation": rows})
    config = load_train_config(path, overrides=[f"model.path={tiny_llava}", f"data.path={data}",
                                                f"output.dir={tmp_path / 'run'}"])
    assert (config.multitask is not None or config.continual is not None or config.method == "full"
            or config.dpo is not None)  # efficacy-dpo.yaml: the DPO runs (benchmarks/efficacy/dpo_efficacy.py)


@pytest.mark.parametrize("path", SHAPES, ids=lambda p: p.name)
def test_shapes_recipes_validate(path):
    from vlmdata.recipe import load_recipe

    loaded = load_recipe(path)
    assert loaded.recipe.sources[0].kind == "shapes"
