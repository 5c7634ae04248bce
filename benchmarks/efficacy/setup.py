"""Benchmark setup: build the shapes datasets with vlmdata, and the "pretrained" tiny base with vlmtrain.

Why a pretrained base: a random-weight model cannot be fine-tuned into anything meaningful with a
small adapter, and a real pretrained VLM does not run on a CPU in minutes. So the tiny LLaVA is first
trained in full (vision tower, projector, language model) on shape *captions* only
(recipes/train/efficacy-pretrain.yaml): it learns to see colours, shapes, sizes and places, but never
sees a question. The LoRA experiments then teach it the questions, as a real VLM is taught a task.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
DATASETS = ("shapes", "shapes-pretrain", "shapes-imbalanced", "shapes-caption")


def build_datasets(*, work: Path, overrides: dict[str, list[str]],
                   names: tuple[str, ...] = DATASETS) -> dict[str, Path]:
    """recipes/NAME.yaml for each name into work/data/NAME (skipped when already built); {name: folder}.

    `overrides` are `--set` style edits per recipe (the CI test builds smaller worlds with them)."""
    from vlmdata.build import build
    from vlmdata.recipe import load_recipe

    out = {}
    for name in names:
        folder = work / "data" / name
        if not (folder / "dataset_dict.json").is_file():
            loaded = load_recipe(RECIPES / f"{name}.yaml", overrides=overrides.get(name, []))
            build(loaded, out=folder, progress=False)
        out[name] = folder
    return out


def pretrain_base(*, work: Path, data: Path, steps: int, echo: Any) -> Path:
    """The tiny LLaVA trained in full on captions, saved as a plain model folder at work/base."""
    from vlmtrain.config.train import load_train_config
    from vlmtrain.evaluation.predict import load_run
    from vlmtrain.models.tiny.registry import write_tiny
    from vlmtrain.recipes.run import run

    base = work / "base"
    if (base / "config.json").is_file():
        return base
    tiny = write_tiny(out=work / "tiny-llava", family="llava", seed=0)
    config = load_train_config(RECIPES / "train" / "efficacy-pretrain.yaml", overrides=[
        f"model.path={tiny}", f"data.path={data}", f"output.dir={work / 'pretrain'}", f"train.steps={steps}",
    ])
    run_dir = run(config=config, echo=echo)
    model, processor = load_run(run_dir=run_dir)
    model.save_pretrained(str(base))
    processor.save_pretrained(str(base))
    return base
