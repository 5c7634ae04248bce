"""Staged training: `stages:` in one config run in order, each from the previous stage's weights.

A typical two-stage recipe (LLaVA-style alignment, then instruction tuning):
```yaml
stages:
  - name: projector                       # only the projector trains, fully, on captions
    data: {path: ../out/captions}
    components: {projector: {train: full, lr: 1.0e-3}}
    train: {steps: 200}
  - name: sft                             # LoRA on the LLM + the projector, on instructions
    components: {projector: {train: full, lr: 2.0e-5}, llm: {train: lora, r: 16, lr: 2.0e-4}}
```
Each stage is an ordinary run (the same recipe) in `runs/NAME/stages/01-projector/`, ... with its own
log, adapter and `trained.safetensors`; its `chain.json` names the earlier stage folders, which
`vlmtrain.weights.replay` loads and merges before the stage starts. The run folder itself receives a
copy of the last stage plus its chain, so `vlmtrain predict runs/NAME` works as for one-stage runs.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from vlmtrain.config import OutputSection, StageSection, TrainConfig, config_to_yaml


def stage_folder(*, config: TrainConfig, index: int, stage: StageSection) -> Path:
    """`runs/NAME/stages/NN-STAGE` (1-based, two digits)."""
    return config.run_dir / "stages" / f"{index:02d}-{stage.name}"


def stage_config(*, config: TrainConfig, index: int, stage: StageSection) -> TrainConfig:
    """The one-stage config of `stage`: its data, components and train settings, its own folder."""
    return config.model_copy(
        update={
            "data": stage.data or config.data,
            "components": stage.components if stage.components is not None else config.components,
            "train": stage.train,
            "stages": None,
            "output": OutputSection(dir=stage_folder(config=config, index=index, stage=stage)),
        }
    )


def run_stages(*, config: TrainConfig, echo: Callable[[str], None] = print) -> Path:
    """Run every stage in order, then copy the last one (and its chain) to the run folder. Returns it."""
    from vlmtrain.recipe import FinetuneRecipe
    from vlmtrain.weights import write_chain

    assert config.stages, "run_stages needs a config with stages"
    chain: list[Path] = []
    for index, stage in enumerate(config.stages, start=1):
        echo(f"== stage {index}/{len(config.stages)}: {stage.name} ==")
        recipe = FinetuneRecipe(config=stage_config(config=config, index=index, stage=stage), echo=echo, chain=chain)
        recipe.setup()
        chain.append(recipe.train())
    final = config.run_dir
    if recipe.main:  # under torchrun only rank 0 writes files
        shutil.copytree(chain[-1], final, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoint-*"))
        write_chain(folder=final, chain=chain[:-1])
        (final / "config.yaml").write_text(config_to_yaml(config), encoding="utf-8")
        echo(f"stages done; the last stage ({config.stages[-1].name}) is copied to {final}")
    recipe.cleanup()
    return final
