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

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from vlmdata.config.errors import ConfigError, Problem
from vlmtrain.config.dpo import DpoSection
from vlmtrain.config.train import OutputSection, StageSection, TrainConfig, config_to_yaml

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
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_stages(*, config: TrainConfig, echo: Callable[[str], None] = print, resume: bool = False) -> Path:
    """Run every stage in order, then copy the last one (and its chain) to the run folder. Returns it.

    `resume` (after a crash or kill): stages that finished (their `stage_done.json`) are kept, not rerun;
    the first unfinished stage continues from its last `checkpoint-N` (`train.save_every`), or starts over
    when it has none; the rest run as usual. With nothing finished and no checkpoint, it refuses.
    """
    from vlmtrain.models.weights import write_chain
    from vlmtrain.recipes.finetune import FinetuneRecipe
    from vlmtrain.training.checkpoint import last_checkpoint
    from vlmtrain.training.distributed import is_main_process, wait_for_everyone

    assert config.stages, "run_stages needs a config with stages"
    folders = [stage_folder(config=config, index=i, stage=s) for i, s in enumerate(config.stages, start=1)]
    if resume and not any((f / DONE).is_file() or last_checkpoint(run_dir=f) for f in folders):
        raise ConfigError([Problem("train.save_every", f"--resume: no stage of {config.run_dir} finished and none "
                                   "wrote a checkpoint-N (set train.save_every to write them)")], what="resume")
    chain: list[Path] = []
    main = is_main_process()
    for index, (stage, folder) in enumerate(zip(config.stages, folders, strict=True), start=1):
        if resume and (folder / DONE).is_file():
            echo(f"== stage {index}/{len(config.stages)}: {stage.name}: finished before, kept ==")
            chain.append(folder)
            continue
        again = resume and last_checkpoint(run_dir=folder) is not None
        echo(f"== stage {index}/{len(config.stages)}: {stage.name} ==")
        recipe = FinetuneRecipe(config=stage_config(config=config, index=index, stage=stage), echo=echo, chain=chain,
                                resume=again)
        recipe.setup()
        chain.append(recipe.train())
        del recipe  # this stage's model, optimizer and trainer go before the next stage loads its model
        _release_memory()
        if main:
            (folder / DONE).write_text(json.dumps({"stage": stage.name, "steps": stage.train.steps}) + "\n",
                                       encoding="utf-8")
    final = config.run_dir
    if main:  # under torchrun only rank 0 writes files
        shutil.copytree(chain[-1], final, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("checkpoint-*", DONE))
        write_chain(folder=final, chain=chain[:-1])
        (final / "config.yaml").write_text(config_to_yaml(config), encoding="utf-8")
        echo(f"stages done; the last stage ({config.stages[-1].name}) is copied to {final}")
    wait_for_everyone()  # no rank returns before rank 0 has copied the last stage
    return final
