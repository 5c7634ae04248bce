"""The single-run recipe (LoRA / QLoRA / full components, SFT loss on the answers): `setup`, `train`, `save`, `cleanup`.

Why a recipe: one place shows everything a run does, in order. The config is validated before this
runs (see `vlmtrain.config.train`); `setup` opens the data before it loads the model, so a bad dataset
costs seconds, not a model load. Every other kind of run reuses these steps: a staged run is one of
these per stage (`vlmtrain.recipes.staged`); a continual run (`vlmtrain.recipes.continual`) and a DPO
run (`vlmtrain.recipes.dpo`) subclass it and replace only the steps that differ (their data, their
Trainer, their loop). A new kind of run is one more file here that does the same.

A run writes to `runs/NAME/` (or `output.dir`):
    config.yaml                                  the resolved config (absolute paths, defaults filled in)
    log.jsonl                                    one line per logged step: step, loss, lr, ... (and eval scores)
    rejected_rows.jsonl                          rows that cannot train at data.max_length: id, task, reason
    packing.json                                 with train.packing: packs, efficiency, task mix (vlmtrain.data.packing)
    checkpoint-N/                                with train.save_every; `vlmtrain run --resume` continues from the last
    adapter_config.json, adapter_model.safetensors   the LoRA adapter (peft format)
    tokenizer.json, processor_config.json, ...   the processor, so the run folder serves on its own
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from transformers import set_seed

from vlmdata.config.errors import ConfigError, Problem
from vlmtrain.config.train import TrainConfig, config_to_yaml
from vlmtrain.data.collate import ChatCollator
from vlmtrain.data.dataset import open_sources
from vlmtrain.data.diagnostics import Diagnostics, diagnose
from vlmtrain.data.packing import PackedCollator, attach_packed_mrope, build_packs, packing_problem
from vlmtrain.evaluation.report import plot_losses, read_logs
from vlmtrain.models.build import Built, build_model
from vlmtrain.models.check import check_model
from vlmtrain.models.families import family_of
from vlmtrain.models.load import load_processor, model_type
from vlmtrain.models.packed_attention import use_packed_attention
from vlmtrain.models.packing_masks import attach_packed_block_masks
from vlmtrain.models.preflight import check_targets
from vlmtrain.models.quant import GuardRelease
from vlmtrain.models.weights import save_weights, write_chain
from vlmtrain.training.callbacks import eval_callbacks, tracker_callbacks
from vlmtrain.training.checkpoint import checkpoint_step, require_checkpoint, trim_log
from vlmtrain.training.distributed import close_process_group, is_main_process, wait_for_everyone
from vlmtrain.training.multitask import build_multitask_trainer
from vlmtrain.training.trainer import build_trainer


class FinetuneRecipe:
    """One training run on `config.data`; the steps of `setup` are methods so other recipes reuse them."""

    trains_preferences = False  # DpoRecipe: True (a `dpo:` config needs its pairs and Trainer)

    def __init__(
        self, *, config: TrainConfig, echo: Callable[[str], None] = print, resume: bool = False,
        chain: Sequence[Path] = (),
    ) -> None:
        if config.dpo is not None and not self.trains_preferences:
            raise ValueError("a config with dpo: runs with vlmtrain.recipes.dpo.DpoRecipe (vlmtrain.recipes.run picks it)")
        self.config = config
        self.chain = list(chain)  # earlier stage folders this run starts from (vlmtrain.recipes.staged)
        self.echo = echo
        self.resume = resume
        self.main = is_main_process()  # under torchrun/accelerate only rank 0 writes files
        self.run_dir = config.run_dir
        self.log_path = self.run_dir / "log.jsonl"

    # ---- setup ----------------------------------------------------------------------------------
    def setup(self) -> None:
        """Check the model, open the run folder, the processor and the data, then load the model and build
        the Trainer. Everything that can refuse the run does so before a weight is read."""
        self.check()
        self.open_folder()
        self.processor, self.collator = self.load_chat()
        self.dataset, self.lengths = self.load_data()
        self.built = self.load_model()
        self.model = self.built.model
        self.trainer = self.build_trainer()

    def check(self) -> None:
        """Family, processor settings, chat template, packing: refused by name before any data or weights."""
        cfg = self.config
        check_model(cfg)
        if cfg.train.packing:
            problem = packing_problem(family=family_of(model_type(model=cfg.model)))
            if problem:
                raise ConfigError([Problem("train.packing", problem)], what="training config")

    def open_folder(self, *, log: bool = True) -> None:
        """Seed, create the run folder, write config.yaml; start log.jsonl (or cut it back to the checkpoint)."""
        set_seed(self.config.seed)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint = require_checkpoint(run_dir=self.run_dir) if self.resume else None
        if not self.main:
            return
        (self.run_dir / "config.yaml").write_text(config_to_yaml(self.config), encoding="utf-8")
        if self.checkpoint is not None:
            trim_log(log_path=self.log_path, step=checkpoint_step(self.checkpoint))
            self.echo(f"resuming from {self.checkpoint}")
        elif log:
            self.log_path.write_text("", encoding="utf-8")

    def load_chat(self) -> tuple[Any, ChatCollator]:
        """The processor (model.processor settings and chat template applied) and the answer-masking collator.
        Lengths and rejects come from these alone: no model is loaded or run for them."""
        cfg = self.config
        processor = load_processor(model=cfg.model)
        family = family_of(model_type(model=cfg.model))
        return processor, ChatCollator(processor=processor, max_length=cfg.data.max_length, family=family)

    def load_data(self) -> tuple[Any, list[int]]:
        """(the rows that train, their token lengths): sources opened and weighted, untrainable rows left out."""
        cfg = self.config
        dataset = open_sources(data=cfg.data, seed=cfg.seed, rejects_dir=self.run_dir / "data" if self.main else None)
        for source in cfg.data.all_sources:
            read = f"{source.kind} (read by vlmdata)" if getattr(source, "kind", None) else f"[{source.split}]"
            self.echo(f"data: {source.path} {read} x{source.weight:g}")
        check_targets(cfg)  # LoRA target typos, on the meta-device model: before any weight is read
        diagnostics = self.diagnose(dataset)
        kept = diagnostics.kept
        if not kept:
            rejected = diagnostics.counts()
            what = ", ".join(f"{n} {reason}" for reason, n in sorted(rejected.items()))
            where = "data.max_length" if set(rejected) <= {"image_cut", "no_answer_tokens"} else "data.path"
            raise ConfigError([Problem(where, f"every row is rejected ({what}; data.max_length is "
                                       f"{cfg.data.max_length}); see {self.run_dir / 'rejected_rows.jsonl'}")],
                              what="dataset")
        dataset = dataset if len(kept) == len(dataset) else dataset.select(kept)
        self.echo(f"data: {len(dataset)} rows to train on")
        return dataset, [min(diagnostics.lengths[i], cfg.data.max_length) for i in kept]

    def diagnose(self, dataset: Any) -> Diagnostics:
        """The length table (printed), rejected_rows.jsonl (written) and the reject summary of `dataset`."""
        diagnostics = diagnose(dataset=dataset, collator=self.collator)
        self.echo(diagnostics.table())
        if self.main:
            diagnostics.write_rejected(path=self.run_dir / "rejected_rows.jsonl")
        rejected = diagnostics.counts()
        if rejected:
            what = ", ".join(f"{n} {reason}" for reason, n in sorted(rejected.items()))
            self.echo(f"rejected {sum(rejected.values())} of {len(dataset)} rows at data.max_length="
                      f"{self.config.data.max_length} ({what}); listed in {self.run_dir / 'rejected_rows.jsonl'}")
        return diagnostics

    def load_model(self) -> Built:
        """The model to train (quantised, earlier stages replayed, LoRA / full components applied); no forward pass."""
        built = build_model(config=self.config, chain=self.chain)
        if self.config.train.packing:  # 3-D mRoPE families get per-row positions on packed batches
            attach_packed_mrope(built.model)
            attach_packed_block_masks(built.model)  # Gemma 3: bidirectional image blocks per row
            use_packed_attention(built.model)  # SDPA per row instead of over the masked T x T blocks
        self.echo(built.table())
        return built

    def callbacks(self, *, folder: Path, log_path: Path) -> list[Any]:
        """`eval:` scores (into `log_path`), `train.report_to` trackers (under `folder`), the QLoRA guard release."""
        guard = [GuardRelease(handle=self.built.guard)] if self.built.guard else []
        return [*eval_callbacks(config=self.config, processor=self.processor, log_path=log_path),
                *tracker_callbacks(config=self.config, folder=folder), *guard]

    def build_trainer(self) -> Any:
        """The Trainer (the multitask one with `multitask:`), packed batches with `train.packing`."""
        cfg = self.config
        dataset, collator = self.packed(dataset=self.dataset, lengths=self.lengths, folder=self.run_dir)
        build = build_multitask_trainer if cfg.multitask is not None else build_trainer
        return build(config=cfg, model=self.model, processor=self.processor, dataset=dataset, collator=collator,
                     log_path=self.log_path, lengths=self.lengths, param_groups=self.built.groups,
                     extra_callbacks=self.callbacks(folder=self.run_dir, log_path=self.log_path))

    def packed(self, *, dataset: Any, lengths: list[int], folder: Path, prefix: str = "") -> tuple[Any, Any]:
        """`dataset` and the collator as they are, or packed into sequences of `data.max_length` with
        `train.packing` (its packs, efficiency and task mix written to `folder`/packing.json)."""
        if not self.config.train.packing:
            return dataset, self.collator
        packs, report = build_packs(config=self.config, rows=dataset, lengths=lengths)
        self.echo(prefix + report.text())
        if self.main:
            (folder / "packing.json").write_text(json.dumps(report.as_dict(), indent=1), encoding="utf-8")
        return packs, PackedCollator(inner=self.collator)

    # ---- train ----------------------------------------------------------------------------------
    def train(self) -> Path:
        """Train (from the checkpoint when resuming), then `save`. Returns the run folder."""
        self.trainer.train(resume_from_checkpoint=str(self.checkpoint) if self.checkpoint is not None else None)
        self.trainer.require_finite_weights()  # never an adapter of inf/NaN (vlmtrain.training.finite_guard)
        self.save()
        return self.run_dir

    # ---- save -----------------------------------------------------------------------------------
    def save(self) -> None:
        """Adapter, fully trained components, stage chain, processor and losses.png into the run folder.

        Sharded runs (FSDP / ZeRO-3) save through the Trainer on every rank, which gathers the shards;
        otherwise rank 0 writes. No rank returns before rank 0 has saved.
        """
        sharded = self.config.distributed is not None and self.config.distributed.sharded
        if sharded:
            self.trainer.save_model(str(self.run_dir))  # adapter + trained.safetensors (VlmTrainer._save)
        if self.main:
            if not sharded:
                save_weights(model=self.model, folder=self.run_dir)
            write_chain(folder=self.run_dir, chain=self.chain)
            self.processor.save_pretrained(str(self.run_dir))
            logs = read_logs(run_dir=self.run_dir)
            if logs:  # per-task loss and learning-rate curves
                plot_losses(logs=logs, path=self.run_dir / "losses.png")
            self.echo(f"saved adapter, processor, config.yaml, log.jsonl and losses.png to {self.run_dir}")
        wait_for_everyone()

    # ---- cleanup --------------------------------------------------------------------------------
    def cleanup(self) -> None:
        """Close the torchrun process group (a no-op in one process): the one shutdown of a run.

        Call once, after the last `train`; `vlmtrain.recipes.run.run` does, whichever kind of run it was,
        so a multi-stage run keeps one group across its stages.
        """
        close_process_group()

