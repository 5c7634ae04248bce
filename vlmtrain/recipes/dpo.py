"""The DPO recipe (`dpo:` or `method: dpo`): the single-run recipe with preference rows and the DPO Trainer.

Only the data (pairs, checked whole against data.max_length) and the Trainer differ; the checks, run
folder, processor, model (quantised, earlier stages replayed), `train`, `save` and `cleanup` are
`FinetuneRecipe`'s own, so a DPO run or stage ends with the same files (adapter, processor,
config.yaml, log.jsonl) and `vlmtrain predict` serves it unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from vlmdata.config.errors import ConfigError, Problem
from vlmtrain.data.dataset import open_sources, open_split
from vlmtrain.models.build import Built
from vlmtrain.models.preflight import check_targets
from vlmtrain.recipes.finetune import FinetuneRecipe
from vlmtrain.training.dpo import PairCollator, pair_rejects
from vlmtrain.training.dpo_images import why_not_once
from vlmtrain.training.dpo_trainer import DpoTrainer, PreferenceEval
from vlmtrain.training.eval_callback import EvalCallback
from vlmtrain.training.trainer import JsonlLogger, training_arguments


def _check_pairs(dataset: Any, *, where: str) -> None:
    missing = [c for c in ("chosen", "rejected") if c not in dataset.column_names]
    if missing:
        raise ConfigError([Problem("data.path", f"{where} has no {' / '.join(missing)} column: DPO trains on "
                                   "preference rows (build them with a vlmdata `preference:` section)")],
                          what="dataset")


class DpoRecipe(FinetuneRecipe):
    """Preference training of the LoRA adapter; its reference model is the same model, adapter disabled."""

    trains_preferences = True

    def load_chat(self) -> tuple[Any, Any]:  # type: ignore[override]
        """The processor and the pair collator (chosen then rejected, labels on the final answer only)."""
        processor, chat = super().load_chat()
        return processor, PairCollator(chat=chat)

    def load_data(self) -> tuple[Any, None]:
        """(the pairs that train, None): a pair whose longer side exceeds data.max_length is listed, never cut."""
        cfg = self.config
        dpo = cfg.dpo
        assert dpo is not None, "DpoRecipe needs a config with dpo:"
        first = cfg.data.all_sources[0].path
        dataset = open_sources(data=cfg.data, seed=cfg.seed)
        _check_pairs(dataset, where=str(first))
        self.held_out = None
        if dpo.eval_split is not None:
            self.held_out = open_split(path=first, split=dpo.eval_split)
            _check_pairs(self.held_out, where=f"{first} [{dpo.eval_split}]")
        self.echo(f"data: {len(dataset)} preference pairs (dpo: beta={dpo.beta}, loss_type={dpo.loss_type}, "
                  f"label_smoothing={dpo.label_smoothing})")
        check_targets(cfg)  # LoRA target typos, on the meta-device model: before any weight is read
        rejected = pair_rejects(dataset=dataset, chat=self.collator.chat)
        if self.main:
            with (self.run_dir / "rejected_rows.jsonl").open("w", encoding="utf-8") as f:
                f.writelines(json.dumps(r) + "\n" for r in rejected)
        if not rejected:
            return dataset, None
        self.echo(f"rejected {len(rejected)} of {len(dataset)} pairs longer than data.max_length="
                  f"{cfg.data.max_length} (a cut answer cannot be compared); listed in "
                  f"{self.run_dir / 'rejected_rows.jsonl'}")
        if len(rejected) == len(dataset):
            raise ConfigError([Problem("data.max_length", f"every pair is longer than {cfg.data.max_length} tokens")],
                              what="dataset")
        gone = {r["id"] for r in rejected}
        return dataset.select([i for i, row_id in enumerate(dataset["id"]) if row_id not in gone]), None

    def load_model(self) -> Built:
        """`FinetuneRecipe.load_model`, refused when there is no LoRA adapter to disable for the reference."""
        built = super().load_model()
        if not hasattr(built.model, "disable_adapter"):
            raise ConfigError([Problem("components", "DPO needs a LoRA adapter to train (its reference is the model "
                                       "with the adapter disabled): give the llm `train: lora`")],
                              what="training config")
        slow_images = why_not_once(built.model)  # a family not proved for once-per-pair images: said by name
        self.echo(slow_images or "dpo: each pair's images are encoded once for its chosen and rejected sides")
        return built

    def build_trainer(self) -> DpoTrainer:
        """The DPO Trainer. `eval:` (a VQA split, generated answers) shows what alignment cost;
        `dpo.eval_split` (held-out preference accuracy) what it bought."""
        cfg = self.config
        callbacks: list[Any] = [JsonlLogger(path=self.log_path),
                                *self.callbacks(folder=self.run_dir, log_path=self.log_path)]
        if self.held_out is not None:
            vqa = next((c for c in callbacks if isinstance(c, EvalCallback)), None)  # printed side by side
            writer = next((c.tb_writer for c in callbacks if getattr(c, "tb_writer", None) is not None), None)
            callbacks.append(PreferenceEval(dataset=self.held_out, collator=self.collator, log_path=self.log_path,
                                            every=cfg.dpo.eval_every, batch_size=cfg.dpo.eval_batch_size,
                                            beta=cfg.dpo.beta,
                                            before=self.built.guard is None,  # no eval forward of a 4-bit model first
                                            vqa=vqa, echo=self.echo, tb_writer=writer))
        trainer = DpoTrainer(lengths=None, model=self.model, args=training_arguments(config=cfg),
                             train_dataset=self.dataset, data_collator=self.collator, processing_class=self.processor,
                             callbacks=callbacks, param_groups=self.built.groups)
        trainer.dpo = cfg.dpo
        return trainer
