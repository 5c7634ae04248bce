"""`FinetuneRecipe.setup` for a DPO run (`dpo:` set): preference rows, the pair collator, the DPO Trainer.

The rest of the run (train, save, the stage chain) is the SFT recipe's own, so a DPO stage ends with
the same files (adapter, processor, config.yaml, log.jsonl) and `vlmtrain predict` serves it unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from vlmdata.config.errors import ConfigError, Problem


def _check_pairs(dataset: Any, *, where: str) -> None:
    missing = [c for c in ("chosen", "rejected") if c not in dataset.column_names]
    if missing:
        raise ConfigError([Problem("data.path", f"{where} has no {' / '.join(missing)} column: DPO trains on "
                                   "preference rows (build them with a vlmdata `preference:` section)")],
                          what="dataset")


def setup_dpo(recipe: Any) -> None:
    """Fill `recipe` (a `vlmtrain.recipes.finetune.FinetuneRecipe`) with the processor, model, collator and Trainer."""
    from transformers import AutoProcessor, set_seed

    from vlmtrain.config.train import config_to_yaml
    from vlmtrain.data.collate import ChatCollator
    from vlmtrain.data.dataset import open_sources, open_split
    from vlmtrain.models.build import build_model
    from vlmtrain.models.families import family_of
    from vlmtrain.models.load import model_type
    from vlmtrain.models.quant import GuardRelease
    from vlmtrain.training.checkpoint import checkpoint_step, require_checkpoint, trim_log
    from vlmtrain.training.dpo import PairCollator, pair_rejects
    from vlmtrain.training.dpo_trainer import DpoTrainer, PreferenceEval
    from vlmtrain.training.trainer import JsonlLogger, training_arguments

    cfg = recipe.config
    set_seed(cfg.seed)
    recipe.run_dir = cfg.run_dir
    recipe.run_dir.mkdir(parents=True, exist_ok=True)
    recipe.log_path = recipe.run_dir / "log.jsonl"
    recipe.checkpoint = require_checkpoint(run_dir=recipe.run_dir) if recipe.resume else None
    if recipe.main:
        (recipe.run_dir / "config.yaml").write_text(config_to_yaml(cfg), encoding="utf-8")
        if recipe.checkpoint is not None:
            trim_log(log_path=recipe.log_path, step=checkpoint_step(recipe.checkpoint))
        else:
            recipe.log_path.write_text("", encoding="utf-8")
    dataset = open_sources(data=cfg.data, seed=cfg.seed)
    _check_pairs(dataset, where=str(cfg.data.all_sources[0].path))
    held_out = None
    if cfg.dpo.eval_split is not None:
        held_out = open_split(path=cfg.data.all_sources[0].path, split=cfg.dpo.eval_split)
        _check_pairs(held_out, where=f"{cfg.data.all_sources[0].path} [{cfg.dpo.eval_split}]")
    recipe.echo(f"data: {len(dataset)} preference pairs (dpo: beta={cfg.dpo.beta}, loss_type={cfg.dpo.loss_type}, "
                f"label_smoothing={cfg.dpo.label_smoothing})")
    processor = AutoProcessor.from_pretrained(str(cfg.model.path), trust_remote_code=cfg.model.trust_remote_code)
    recipe.processor = processor
    family = family_of(model_type(model=cfg.model))
    recipe.collator = PairCollator(chat=ChatCollator(processor=processor, max_length=cfg.data.max_length,
                                                     family=family))
    rejected = pair_rejects(dataset=dataset, chat=recipe.collator.chat)
    if recipe.main:
        with (recipe.run_dir / "rejected_rows.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(r) + "\n" for r in rejected)
    if rejected:
        recipe.echo(f"rejected {len(rejected)} of {len(dataset)} pairs longer than data.max_length="
                    f"{cfg.data.max_length} (a cut answer cannot be compared); listed in "
                    f"{recipe.run_dir / 'rejected_rows.jsonl'}")
        if len(rejected) == len(dataset):
            raise ConfigError([Problem("data.max_length", f"every pair is longer than {cfg.data.max_length} tokens")],
                              what="dataset")
        gone = {r["id"] for r in rejected}
        dataset = dataset.select([i for i, row_id in enumerate(dataset["id"]) if row_id not in gone])
    recipe.dataset = dataset
    built = build_model(config=cfg, chain=recipe.chain)  # the reference = this model, adapter disabled
    if not hasattr(built.model, "disable_adapter"):
        raise ConfigError([Problem("components", "DPO needs a LoRA adapter to train (its reference is the model "
                                   "with the adapter disabled): give the llm `train: lora`")], what="training config")
    recipe.model = built.model
    recipe.echo(built.table())
    from vlmtrain.training.dpo_images import why_not_once

    slow_images = why_not_once(recipe.model)  # a family not proved for once-per-pair images: said by name
    recipe.echo(slow_images or "dpo: each pair's images are encoded once for its chosen and rejected sides")
    # `eval:` (a VQA split, generated answers) shows what alignment cost; `dpo.eval_split` what it bought
    vqa_evals, trackers = recipe._eval_callbacks(), recipe._tracker_callbacks()
    callbacks: list[Any] = [JsonlLogger(path=recipe.log_path), *vqa_evals, *trackers]
    if held_out is not None:
        writer = next((getattr(t, "tb_writer", None) for t in trackers), None)
        callbacks.append(PreferenceEval(dataset=held_out, collator=recipe.collator, log_path=recipe.log_path,
                                        every=cfg.dpo.eval_every, batch_size=cfg.dpo.eval_batch_size, beta=cfg.dpo.beta,
                                        before=built.guard is None,  # no eval forward of a 4-bit model first
                                        vqa=vqa_evals[0] if vqa_evals else None, echo=recipe.echo, tb_writer=writer))
    if built.guard:
        callbacks.append(GuardRelease(handle=built.guard))
    trainer = DpoTrainer(lengths=None, model=recipe.model, args=training_arguments(config=cfg),
                         train_dataset=recipe.dataset, data_collator=recipe.collator, processing_class=processor,
                         callbacks=callbacks)
    trainer.dpo = cfg.dpo
    trainer.param_groups = built.groups
    recipe.trainer = trainer
    from vlmtrain.training.distributed import close_at_exit

    close_at_exit()
