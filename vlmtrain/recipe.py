"""The LoRA fine-tuning recipe: read it top to bottom, `setup` then `train`.

Why a recipe: one place shows everything a run does, in order. The config is validated before this
runs (see `vlmtrain.config`); `setup` opens the data before it loads the model, so a bad dataset
costs seconds, not a model load.

A run writes to `runs/NAME/` (or `output.dir`):
    config.yaml                                  the resolved config (absolute paths, defaults filled in)
    log.jsonl                                    one line per logged step: step, loss, lr, ...
    adapter_config.json, adapter_model.safetensors   the LoRA adapter (peft format)
    tokenizer.json, processor_config.json, ...   the processor, so the run folder serves on its own
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vlmtrain.config import TrainConfig, config_to_yaml


class FinetuneRecipe:
    """LoRA on the language model of a VLM, with loss on assistant answers only."""

    def __init__(self, *, config: TrainConfig, echo: Callable[[str], None] = print) -> None:
        self.config = config
        self.echo = echo

    def setup(self) -> None:
        """Write the resolved config, open the data, load the model, add LoRA, build the Trainer."""
        from transformers import set_seed

        from vlmtrain.collate import ChatCollator
        from vlmtrain.data import open_split
        from vlmtrain.model import apply_lora, load_base, parameter_table
        from vlmtrain.trainer import build_trainer

        cfg = self.config
        set_seed(cfg.seed)
        self.run_dir = cfg.run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(config_to_yaml(cfg), encoding="utf-8")
        self.log_path = self.run_dir / "log.jsonl"
        self.log_path.write_text("", encoding="utf-8")

        self.dataset = open_split(path=cfg.data.path, split=cfg.data.split)
        self.echo(f"data: {len(self.dataset)} rows from {cfg.data.path} [{cfg.data.split}]")

        base, self.processor = load_base(model=cfg.model)
        self.model = apply_lora(
            model=base, lora=cfg.lora, seed=cfg.seed, gradient_checkpointing=cfg.train.gradient_checkpointing
        )
        self.echo(parameter_table(self.model))

        self.collator = ChatCollator(processor=self.processor, max_length=cfg.data.max_length)
        self.trainer = build_trainer(
            config=cfg,
            model=self.model,
            processor=self.processor,
            dataset=self.dataset,
            collator=self.collator,
            log_path=self.log_path,
        )

    def train(self) -> Path:
        """Train, then save the adapter and processor next to the config and log. Returns the run folder."""
        self.trainer.train()
        self.model.save_pretrained(str(self.run_dir))
        self.processor.save_pretrained(str(self.run_dir))
        self.echo(f"saved adapter, processor, config.yaml and log.jsonl to {self.run_dir}")
        return self.run_dir


def run(*, config: TrainConfig, echo: Callable[[str], None] = print) -> Path:
    """Setup then train; the whole fine-tune in one call (what `vlmtrain run` and the tests use)."""
    recipe = FinetuneRecipe(config=config, echo=echo)
    recipe.setup()
    return recipe.train()
