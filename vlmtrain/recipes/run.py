"""Which recipe a config runs, and the one way every run goes: `setup`, `train` (which saves), `cleanup`.

A new kind of run is a new file in this package (a class with those three methods, reusing
`FinetuneRecipe`'s steps) and one line in `recipe_for`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from vlmdata.config.errors import ConfigError, Problem
from vlmtrain.config.train import TrainConfig
from vlmtrain.recipes.continual import ContinualRecipe
from vlmtrain.recipes.dpo import DpoRecipe
from vlmtrain.recipes.finetune import FinetuneRecipe
from vlmtrain.recipes.staged import StagedRecipe


class Recipe(Protocol):
    def setup(self) -> None: ...
    def train(self) -> Path: ...
    def cleanup(self) -> None: ...


def recipe_for(*, config: TrainConfig, echo: Callable[[str], None] = print, resume: bool = False) -> Recipe:
    """The recipe of `config`: continual, staged, DPO or a single fine-tune."""
    if config.continual is not None:
        if resume:
            raise ConfigError([Problem("continual", "--resume is not supported for continual runs yet: a stage's "
                                       "strategy state (replay buffer, Fisher, teacher) is not checkpointed; "
                                       "rerun without --resume")], what="resume")
        return ContinualRecipe(config=config, echo=echo)
    if config.stages:
        return StagedRecipe(config=config, echo=echo, resume=resume)
    if config.dpo is not None:
        return DpoRecipe(config=config, echo=echo, resume=resume)
    return FinetuneRecipe(config=config, echo=echo, resume=resume)


def run(*, config: TrainConfig, echo: Callable[[str], None] = print, resume: bool = False) -> Path:
    """The whole run in one call (what `vlmtrain run`, the benchmarks and the tests use); returns the run folder.

    `resume` continues from the run folder's last `checkpoint-N` (see `vlmtrain.training.checkpoint`); a staged run
    keeps its finished stages (see `vlmtrain.recipes.staged`); a continual run refuses it. Under torchrun the
    process group is closed here, once, whichever kind of run it was and however it ended.
    """
    recipe = recipe_for(config=config, echo=echo, resume=resume)
    try:
        recipe.setup()
        return recipe.train()
    finally:
        recipe.cleanup()
