"""The DPO Trainer: the stock Trainer (via `VlmTrainer`) with a DPO `compute_loss`, and preference accuracy.

Per step it logs TRL's names: `loss`, `rewards/chosen`, `rewards/rejected`, `rewards/margins`,
`rewards/accuracies` (averaged over the steps since the last log), which the JSONL logger and
TensorBoard pick up like any other logged value.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback

from vlmtrain.config.dpo import DpoSection
from vlmtrain.data.dataset import row_batches
from vlmtrain.training.dpo import dpo_loss, pair_logps, split_pair
from vlmtrain.training.dpo_images import encode_pair_images, images_frozen
from vlmtrain.training.trainer import VlmTrainer


def shared_images(*, model: Any, batch: dict[str, Any]) -> Any | None:
    """One encoding of the batch's images for both the policy and the reference forward, when the vision
    tower and projector are frozen and adapter-free (both see the same features); else None (each
    forward encodes once per pair itself). Whether they are is asked once per model."""
    frozen = getattr(model, "_vlmtrain_images_frozen", None)
    if frozen is None:
        frozen = images_frozen(model)
        model._vlmtrain_images_frozen = frozen
    if not frozen:
        return None
    with torch.no_grad():
        return encode_pair_images(model=model, batch=batch)


class DpoTrainer(VlmTrainer):
    """`compute_loss` = DPO on a pair batch (chosen then rejected, one forward each for policy and reference;
    each pair's images encoded once: `vlmtrain.training.dpo_images`)."""

    dpo: DpoSection = DpoSection()

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        images = shared_images(model=model, batch=inputs)
        reference, _ = pair_logps(model=model, batch=inputs, reference=True, images=images)
        policy, tokens = pair_logps(model=model, batch=inputs, reference=False, images=images)
        loss, metrics = dpo_loss(policy=policy, reference=reference, tokens=tokens, beta=self.dpo.beta,
                                 loss_type=self.dpo.loss_type, label_smoothing=self.dpo.label_smoothing,
                                 sft_weight=self.dpo.sft_weight)
        if not hasattr(self, "_dpo_metrics"):
            self._dpo_metrics: dict[str, list[float]] = defaultdict(list)
        for k, v in metrics.items():
            self._dpo_metrics[k].append(v)
        return (loss, None) if return_outputs else loss

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        stored = getattr(self, "_dpo_metrics", None)
        if stored and "loss" in logs:
            logs = {**logs, **{k: sum(v) / len(v) for k, v in stored.items()}}
            stored.clear()
        super().log(logs, *args, **kwargs)


def preference_accuracy(*, model: Any, dataset: Any, collator: Any, batch_size: int = 8,
                        beta: float = 1.0) -> dict[str, float]:
    """Held-out preference accuracy (`rewards/accuracies`): the share of pairs whose implicit reward ranks
    chosen above rejected (policy log-ratio against the adapter-disabled reference), plus the mean reward
    margin (`rewards/margins`, times beta as in training: see `beta`). Both are 0 before training by
    construction (policy = reference), so `logps/accuracies` says how often the model itself finds the chosen
    answer likelier than the rejected one (summed log-probs): the "before" number a user compares. Eval mode,
    no grad."""

    was_training = model.training
    model.eval()
    hits, likelier, margins, n = 0.0, 0.0, 0.0, 0
    device = next(model.parameters()).device
    with torch.no_grad():
        for rows in row_batches(dataset, batch_size=batch_size):
            batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in collator(rows).items()}
            images = shared_images(model=model, batch=batch)
            ref, _ = pair_logps(model=model, batch=batch, reference=True, images=images)
            pol, _ = pair_logps(model=model, batch=batch, reference=False, images=images)
            chosen, rejected = split_pair(pol - ref)
            hits += float((chosen > rejected).float().sum())
            pol_chosen, pol_rejected = split_pair(pol)
            likelier += float((pol_chosen > pol_rejected).float().sum())
            margins += beta * float((chosen - rejected).sum())
            n += len(rows)
    if was_training:
        model.train()
    return {"rewards/accuracies": hits / max(n, 1), "rewards/margins": margins / max(n, 1),
            "logps/accuracies": likelier / max(n, 1), "pairs": n}


class PreferenceEval(TrainerCallback):
    """Preference accuracy on a held-out split before training, every `every` steps, and at the end,
    appended to log.jsonl as `{"step": N, "preference_eval": {"rewards/accuracies", "rewards/margins", "logps/accuracies", "pairs"}}`.

    Why it also drives the VQA eval at step 0 (`vqa`: the run's `eval:` callback, which otherwise never runs
    before the first step): what alignment bought (preference accuracy) and what it cost (VQA accuracy)
    are read side by side, from the same starting point. Each eval prints one line with both
    (`echo`), the end of training prints the table of all of them, and `tb_writer` (the run's TensorBoard
    writer, when `train.report_to` has it) gets them as `eval/preference/...` and `eval/vqa_accuracy`."""

    def __init__(self, *, dataset: Any, collator: Any, log_path: Path, every: int | None, batch_size: int,
                 beta: float, before: bool = True, vqa: Any | None = None, echo: Any | None = None,
                 tb_writer: Any | None = None) -> None:
        self.dataset, self.collator, self.log_path = dataset, collator, log_path
        self.every, self.batch_size, self.before, self.beta = every, batch_size, before, beta
        self.vqa, self.echo, self.tb_writer = vqa, echo, tb_writer

    def _run(self, *, model: Any, step: int) -> None:
        scores = preference_accuracy(model=model, dataset=self.dataset, collator=self.collator,
                                     batch_size=self.batch_size, beta=self.beta)
        with self.log_path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, "preference_eval": scores}) + "\n")
        vqa = vqa_at(log_path=self.log_path, step=step)
        if self.echo is not None:
            self.echo(eval_line(step=step, preference=scores, vqa=vqa))
        if self.tb_writer is not None:
            for name in ("rewards/accuracies", "rewards/margins", "logps/accuracies"):
                self.tb_writer.add_scalar(f"eval/preference/{name}", scores[name], step)
            if vqa is not None:
                self.tb_writer.add_scalar("eval/vqa_accuracy", vqa, step)
            self.tb_writer.flush()

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and self.before:
            if self.vqa is not None and state.global_step == 0:  # the VQA accuracy before alignment
                self.vqa.on_step_end(args, state, control, model=model)
            self._run(model=model, step=state.global_step)

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if (state.is_world_process_zero and self.every and state.global_step % self.every == 0
                and state.global_step < state.max_steps):
            self._run(model=model, step=state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self._run(model=model, step=state.global_step)
            if self.echo is not None:
                self.echo(eval_table(log_path=self.log_path))


def _log_lines(log_path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in log_path.read_text(encoding="utf-8").splitlines() if x.strip()]


def vqa_at(*, log_path: Path, step: int) -> float | None:
    """The overall VQA accuracy of the `eval:` line of `step` in log.jsonl, if one was written."""
    found = None
    for line in _log_lines(log_path):
        if line.get("step") == step and "eval" in line and "overall" in line["eval"]:
            found = line["eval"]["overall"].get("vqa_accuracy")
    return found


def eval_line(*, step: int, preference: dict[str, float], vqa: float | None) -> str:
    """One eval as a user reads it: preference accuracy (both forms) beside VQA accuracy."""
    return (f"step {step}: preference accuracy {preference['rewards/accuracies']:.3f} (rewards/accuracies), "
            f"chosen likelier {preference['logps/accuracies']:.3f} (logps/accuracies), "
            f"margin {preference['rewards/margins']:.3f} on {preference['pairs']} held-out pairs | VQA accuracy "
            + ("-" if vqa is None else f"{vqa:.3f}"))


def eval_table(*, log_path: Path) -> str:
    """Every eval step of a DPO run: preference accuracy and VQA accuracy side by side (from log.jsonl)."""
    prefs = {r["step"]: r["preference_eval"] for r in _log_lines(log_path) if "preference_eval" in r}
    rows = ["step | rewards/accuracies | logps/accuracies | rewards/margins | VQA accuracy"]
    for step in sorted(prefs):
        vqa = vqa_at(log_path=log_path, step=step)
        p = prefs[step]
        rows.append(f"{step} | {p['rewards/accuracies']:.3f} | {p['logps/accuracies']:.3f} | "
                    f"{p['rewards/margins']:.3f} | " + ("-" if vqa is None else f"{vqa:.3f}"))
    return "\n".join(rows)
