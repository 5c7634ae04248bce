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
`vlmtrain.models.weights.replay` loads and merges before the stage starts. The run folder itself receives a
copy of the last stage plus its chain, so `vlmtrain predict runs/NAME` works as for one-stage runs.
`vlmtrain run --resume` keeps the finished stages and continues the first unfinished one.
"""

from __future__ import annotations

import gc
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from vlmdata.config.errors import ConfigError, Problem
from vlmtrain.config.dpo import DpoSection
from vlmtrain.config.train import OutputSection, StageSection, TrainConfig, config_to_yaml
from vlmtrain.models.weights import write_chain
from vlmtrain.recipes.dpo import DpoRecipe
from vlmtrain.recipes.finetune import FinetuneRecipe
from vlmtrain.training.checkpoint import last_checkpoint
from vlmtrain.training.distributed import close_process_group, is_main_process, wait_for_everyone

DONE = "stage_done.json"  # written into a stage's folder once it has trained and saved: --resume keeps it


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
            "dpo": (stage.dpo or config.dpo or DpoSection()) if stage.method == "dpo" or stage.dpo else None,
            "output": OutputSection(dir=stage_folder(config=config, index=index, stage=stage)),
        }
    )


def _release_memory() -> None:
    """Collect the finished stage's objects now (the Trainer holds reference cycles, which only the cycle
    collector frees) and hand cached GPU blocks back, so stage N+1 does not load beside stage N's model."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class StagedRecipe:
    """`stages:` in order, each an ordinary `FinetuneRecipe` (or `DpoRecipe`) started from the stages before it."""

    def __init__(self, *, config: TrainConfig, echo: Callable[[str], None] = print, resume: bool = False) -> None:
        assert config.stages, "StagedRecipe needs a config with stages"
        self.config, self.echo, self.resume = config, echo, resume
        self.stages = config.stages
        self.folders = [stage_folder(config=config, index=i, stage=s) for i, s in enumerate(self.stages, start=1)]
        self.main = is_main_process()  # under torchrun only rank 0 writes files
        self.chain: list[Path] = []

    # ---- setup ----------------------------------------------------------------------------------
    def setup(self) -> None:
        """With `resume`: refuse when no stage finished and none wrote a checkpoint. Each stage sets itself up."""
        if self.resume and not any((f / DONE).is_file() or last_checkpoint(run_dir=f) for f in self.folders):
            raise ConfigError([Problem("train.save_every", f"--resume: no stage of {self.config.run_dir} finished "
                                       "and none wrote a checkpoint-N (set train.save_every to write them)")],
                              what="resume")

    # ---- train ----------------------------------------------------------------------------------
    def train(self) -> Path:
        """Every stage in order, then `save`. Returns the run folder.

        `resume` (after a crash or kill): stages that finished (their `stage_done.json`) are kept, not rerun;
        the first unfinished stage continues from its last `checkpoint-N` (`train.save_every`), or starts over
        when it has none; the rest run as usual.
        """
        for index, (stage, folder) in enumerate(zip(self.stages, self.folders, strict=True), start=1):
            if self.resume and (folder / DONE).is_file():
                self.echo(f"== stage {index}/{len(self.stages)}: {stage.name}: finished before, kept ==")
                self.chain.append(folder)
                continue
            self.echo(f"== stage {index}/{len(self.stages)}: {stage.name} ==")
            self.chain.append(self.train_stage(index=index, stage=stage, folder=folder))
            if self.main:
                (folder / DONE).write_text(json.dumps({"stage": stage.name, "steps": stage.train.steps}) + "\n",
                                           encoding="utf-8")
        self.save()
        return self.config.run_dir

    def train_stage(self, *, index: int, stage: StageSection, folder: Path) -> Path:
        """One stage as its own single run, from the stages before it; its memory is freed before the next."""
        config = stage_config(config=self.config, index=index, stage=stage)
        kind = DpoRecipe if config.dpo is not None else FinetuneRecipe
        again = self.resume and last_checkpoint(run_dir=folder) is not None
        recipe = kind(config=config, echo=self.echo, chain=self.chain, resume=again)
        recipe.setup()
        done = recipe.train()
        del recipe  # this stage's model, optimizer and trainer go before the next stage loads its model
        _release_memory()
        return done

    # ---- save -----------------------------------------------------------------------------------
    def save(self) -> None:
        """The last stage (and its chain) copied to the run folder, so it serves like a one-stage run."""
        final = self.config.run_dir
        if self.main:
            shutil.copytree(self.chain[-1], final, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("checkpoint-*", DONE))
            write_chain(folder=final, chain=self.chain[:-1])
            (final / "config.yaml").write_text(config_to_yaml(self.config), encoding="utf-8")
            self.echo(f"stages done; the last stage ({self.stages[-1].name}) is copied to {final}")
        wait_for_everyone()  # no rank returns before rank 0 has copied the last stage

    # ---- cleanup --------------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Close the torchrun process group once, after the last stage (the stages share it)."""
        close_process_group()
