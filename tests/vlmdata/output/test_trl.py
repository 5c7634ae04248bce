"""The row contract is TRL's format: `trl.SFTTrainer` trains on a vlmdata build as it is.

No conversion: `datasets.load_from_disk(out)["train"]` (columns `messages` + `images`, plus our `id`,
`task`, `source`, `answers`, `meta`) goes straight into the trainer with a tiny offline LLaVA. TRL's
vision collator renders our messages with the model's chat template, fills our `{"type": "image"}`
parts with our images, and — with `assistant_only_loss` — masks every token outside the template's
`{% generation %}` blocks, so only the assistant answers (and their EOS) are learned.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import trl  # noqa: F401  (the dev extra installs it; a missing trl is a failure, not a skip)
from vlmdata_kit import Workspace


@pytest.mark.slow
def test_sft_trainer_trains_on_our_output_as_is(ws: Workspace, tmp_path: Path) -> None:
    import datasets
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import SFTConfig, SFTTrainer

    from vlmtrain.models.tiny.registry import write_tiny

    rows = []
    for i in range(8):
        ws.image(f"img/{i}.png", seed=i, size=(40, 32))
        rows.append({"image": f"img/{i}.png", "question": f"What colour is square {i}?", "answers": [f"red {i}"]})
    ws.jsonl("qa.jsonl", rows)
    built = ws.build({"name": "trl", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl", "task": "vqa"}],
                      "instruct": {"vqa": {"suffix": "Answer briefly."}}})
    train = datasets.load_from_disk(str(built.path))["train"]
    assert {"messages", "images"} <= set(train.column_names) and len(train) == 8

    model_dir = write_tiny(out=tmp_path / "tiny-llava", family="llava")
    processor = AutoProcessor.from_pretrained(str(model_dir))
    model = AutoModelForImageTextToText.from_pretrained(str(model_dir))
    args = SFTConfig(output_dir=str(tmp_path / "run"), max_steps=3, per_device_train_batch_size=4, learning_rate=1e-3,
                     assistant_only_loss=True, max_length=None, logging_steps=1, save_strategy="no", report_to=[],
                     use_cpu=True, dataloader_num_workers=0, seed=0)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train, processing_class=processor)

    batch = trainer.data_collator([train[i] for i in range(2)])
    assert batch["pixel_values"].shape[0] == 2  # our images went through the processor
    labels, ids = batch["labels"], batch["input_ids"]
    image_id = model.config.image_token_id
    assert (ids == image_id).any() and not (labels == image_id).any()  # image tokens are never targets
    for k in range(2):
        learned = processor.tokenizer.decode(labels[k][labels[k] != -100])
        answer = train[k]["messages"][1]["content"][0]["text"]
        assert answer in learned and "What colour" not in learned  # the assistant turn only ...
        assert learned.rstrip().endswith(processor.tokenizer.eos_token)  # ... and its EOS: it learns to stop
    assert (labels == -100).sum() > (labels != -100).sum()

    out = trainer.train()
    assert trainer.state.global_step == 3 and math.isfinite(out.training_loss)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert torch.isfinite(next(model.parameters())).all()
