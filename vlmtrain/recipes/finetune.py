"""The LoRA fine-tuning recipe: read it top to bottom, `setup`, `train`, then `cleanup`.

Why a recipe: one place shows everything a run does, in order. The config is validated before this
runs (see `vlmtrain.config.train`); `setup` opens the data before it loads the model, so a bad dataset
costs seconds, not a model load.

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

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vlmdata.config.errors import ConfigError, Problem
from vlmtrain.config.train import TrainConfig, config_to_yaml
from vlmtrain.training.distributed import is_main_process


class FinetuneRecipe:
    """LoRA on the language model of a VLM, with loss on assistant answers only."""

    def __init__(
        self, *, config: TrainConfig, echo: Callable[[str], None] = print, resume: bool = False,
        chain: Sequence[Path] = (),
    ) -> None:
        self.config = config
        self.chain = list(chain)  # earlier stage folders this run starts from (vlmtrain.recipes.staged)
        self.echo = echo
        self.resume = resume
        self.main = is_main_process()  # under torchrun/accelerate only rank 0 writes files

    def setup(self) -> None:
        """Write the resolved config, open the data, load the model, add LoRA, build the Trainer."""
        from transformers import set_seed

        from vlmtrain.data.collate import ChatCollator
        from vlmtrain.data.dataset import open_sources
        from vlmtrain.data.diagnostics import diagnose
        from vlmtrain.models.build import build_model
        from vlmtrain.models.families import family_of
        from vlmtrain.models.load import load_processor, model_type
        from vlmtrain.models.quant import GuardRelease
        from vlmtrain.training.checkpoint import checkpoint_step, require_checkpoint, trim_log
        from vlmtrain.training.trainer import build_trainer

        cfg = self.config
        from vlmtrain.models.check import check_model

        check_model(cfg)  # family, processor settings, chat template: before any data or weights
        if cfg.dpo is not None:  # preference training: its own data check, collator and Trainer
            from vlmtrain.recipes.dpo import setup_dpo

            setup_dpo(self)
            return
        set_seed(cfg.seed)
        self.run_dir = cfg.run_dir
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.run_dir / "log.jsonl"
        self.checkpoint = require_checkpoint(run_dir=self.run_dir) if self.resume else None
        if self.main:
            (self.run_dir / "config.yaml").write_text(config_to_yaml(cfg), encoding="utf-8")
            if self.checkpoint is not None:
                trim_log(log_path=self.log_path, step=checkpoint_step(self.checkpoint))
                self.echo(f"resuming from {self.checkpoint}")
            else:
                self.log_path.write_text("", encoding="utf-8")

        if cfg.train.packing:  # refused by name before any data or model work (vlmtrain.data.packing)
            from vlmtrain.data.packing import packing_problem

            problem = packing_problem(family=family_of(model_type(model=cfg.model)))
            if problem:
                raise ConfigError([Problem("train.packing", problem)], what="training config")
        dataset = open_sources(data=cfg.data, seed=cfg.seed, rejects_dir=self.run_dir / "data" if self.main else None)
        for source in cfg.data.all_sources:
            read = f"{source.kind} (read by vlmdata)" if getattr(source, "kind", None) else f"[{source.split}]"
            self.echo(f"data: {source.path} {read} x{source.weight:g}")
        # Lengths and rejects come from the processor alone: no model is loaded or run for them.
        processor = load_processor(model=cfg.model)  # model.processor settings and chat template applied
        self.processor = processor
        family = family_of(model_type(model=cfg.model))
        self.collator = ChatCollator(processor=processor, max_length=cfg.data.max_length, family=family)
        from vlmtrain.models.preflight import check_targets

        check_targets(cfg)  # LoRA target typos, on the meta-device model: before any weight is read
        diagnostics = diagnose(dataset=dataset, collator=self.collator)
        self.echo(diagnostics.table())
        if self.main:
            diagnostics.write_rejected(path=self.run_dir / "rejected_rows.jsonl")
        rejected = diagnostics.counts()
        if rejected:
            what = ", ".join(f"{n} {reason}" for reason, n in sorted(rejected.items()))
            self.echo(f"rejected {sum(rejected.values())} of {len(dataset)} rows at data.max_length="
                      f"{cfg.data.max_length} ({what}); listed in {self.run_dir / 'rejected_rows.jsonl'}")
        kept = diagnostics.kept
        if not kept:
            what = ", ".join(f"{n} {reason}" for reason, n in sorted(rejected.items()))
            where = "data.max_length" if set(rejected) <= {"image_cut", "no_answer_tokens"} else "data.path"
            raise ConfigError([Problem(where, f"every row is rejected ({what}; data.max_length is "
                                       f"{cfg.data.max_length}); see {self.run_dir / 'rejected_rows.jsonl'}")],
                              what="dataset")
        self.dataset = dataset if len(kept) == len(dataset) else dataset.select(kept)
        lengths = [min(diagnostics.lengths[i], cfg.data.max_length) for i in kept]
        self.echo(f"data: {len(self.dataset)} rows to train on")
        train_data, collator = self.dataset, self.collator
        if cfg.train.packing:
            from vlmtrain.data.packing import PackedCollator, build_packs

            train_data, report = build_packs(config=cfg, rows=self.dataset, lengths=lengths)
            collator = PackedCollator(inner=self.collator)
            self.echo(report.text())
            if self.main:
                import json

                (self.run_dir / "packing.json").write_text(json.dumps(report.as_dict(), indent=1), encoding="utf-8")

        built = build_model(config=cfg, chain=self.chain)  # no forward pass (see vlmtrain.models.quant)
        self.model = built.model
        if cfg.train.packing:  # 3-D mRoPE families get per-row positions on packed batches
            from vlmtrain.data.packing import attach_packed_mrope

            attach_packed_mrope(self.model)
            from vlmtrain.models.packing_masks import attach_packed_block_masks

            attach_packed_block_masks(self.model)  # Gemma 3: bidirectional image blocks per row
            from vlmtrain.models.packed_attention import use_packed_attention

            use_packed_attention(self.model)  # SDPA per row instead of over the masked T x T blocks
        self.echo(built.table())

        build = build_trainer
        if cfg.multitask is not None:  # per-task losses, task sampling, loss weighting
            from vlmtrain.training.multitask import build_multitask_trainer

            build = build_multitask_trainer
        self.trainer = build(
            config=cfg,
            model=self.model,
            processor=self.processor,
            dataset=train_data,
            collator=collator,
            log_path=self.log_path,
            lengths=lengths,
            extra_callbacks=[*self._eval_callbacks(), *self._tracker_callbacks(),
                             *([GuardRelease(handle=built.guard)] if built.guard else [])],
            param_groups=built.groups,
        )
        from vlmtrain.training.distributed import close_at_exit

        close_at_exit()  # under torchrun: the process group is closed even if `cleanup` is never called

    def _tracker_callbacks(self) -> list[Any]:
        """TensorBoard (`train.report_to: [tensorboard]`), writing to runs/NAME/tensorboard."""
        from vlmtrain.training.callbacks import tracker_callbacks

        return tracker_callbacks(config=self.config, folder=self.run_dir)

    def _eval_callbacks(self) -> list[Any]:
        """The evaluation-during-training callback when the config has an `eval:` section."""
        from vlmtrain.training.callbacks import eval_callbacks

        return eval_callbacks(config=self.config, processor=self.processor, log_path=self.log_path)

    def train(self) -> Path:
        """Train, then save the adapter and processor next to the config and log. Returns the run folder."""
        self.trainer.train(resume_from_checkpoint=str(self.checkpoint) if self.checkpoint is not None else None)
        self.trainer.require_finite_weights()  # never an adapter of inf/NaN (vlmtrain.training.finite_guard)
        if self.config.distributed is not None and self.config.distributed.sharded:
            # every rank takes part: the Trainer gathers the shards (adapter + trained.safetensors, VlmTrainer._save)
            self.trainer.save_model(str(self.run_dir))
        if self.trainer.is_world_process_zero():
            from vlmtrain.models.weights import save_trained, write_chain

            sharded = self.config.distributed is not None and self.config.distributed.sharded
            if hasattr(self.model, "peft_config") and not sharded:
                self.model.save_pretrained(str(self.run_dir))
            if not sharded:
                save_trained(model=self.model, folder=self.run_dir)  # fully trained components, if any
            write_chain(folder=self.run_dir, chain=self.chain)
            self.processor.save_pretrained(str(self.run_dir))
            from vlmtrain.evaluation.report import plot_losses, read_logs

            logs = read_logs(run_dir=self.run_dir)
            if logs:  # per-task loss and learning-rate curves
                plot_losses(logs=logs, path=self.run_dir / "losses.png")
            self.echo(f"saved adapter, processor, config.yaml, log.jsonl and losses.png to {self.run_dir}")
        from vlmtrain.training.distributed import wait_for_everyone

        wait_for_everyone()  # under torchrun no rank returns before rank 0 has saved
        return self.run_dir

    def cleanup(self) -> None:
        """Close the torchrun process group (a no-op in one process). Call once, after the last `train`:
        a multi-stage run keeps one group across its stages."""
        from vlmtrain.training.distributed import close_process_group

        close_process_group()


def run(*, config: TrainConfig, echo: Callable[[str], None] = print, resume: bool = False) -> Path:
    """Setup then train; the whole fine-tune in one call (what `vlmtrain run` and the tests use).

    `resume` continues from the run folder's last `checkpoint-N` (see `vlmtrain.training.checkpoint`); a staged run
    keeps its finished stages (see `vlmtrain.recipes.staged`); a continual run refuses it. Under torchrun the
    process group is closed here, once, whichever kind of run it was (`vlmtrain.training.distributed`).
    """
    from vlmtrain.training.distributed import close_process_group

    folder = _run(config=config, echo=echo, resume=resume)
    close_process_group()
    return folder


def _run(*, config: TrainConfig, echo: Callable[[str], None], resume: bool) -> Path:
    if config.continual is not None:
        from vlmtrain.recipes.continual import run_continual

        if resume:
            raise ConfigError([Problem("continual", "--resume is not supported for continual runs yet: a stage's "
                                       "strategy state (replay buffer, Fisher, teacher) is not checkpointed; "
                                       "rerun without --resume")], what="resume")
        return run_continual(config=config, echo=echo)
    if config.stages:
        from vlmtrain.recipes.staged import run_stages

        return run_stages(config=config, echo=echo, resume=resume)
    recipe = FinetuneRecipe(config=config, echo=echo, resume=resume)
    recipe.setup()
    return recipe.train()
