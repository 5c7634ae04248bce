"""DPO encodes each pair's images once: the same log-probs as the plain 2B forward, half the vision work."""

from __future__ import annotations

import hashlib

import pytest
import torch
from pair_rows import colour_pairs, pair_row
from tiny_cache import tiny_dir
from train_rows import png

from vlmdata.schema import PREFERENCE_TASK, image_part, message, preference_row_id, text_part

ALL_FAMILIES = ["llava", "llava_next", "llava_onevision", "mistral3", "internvl", "aya_vision", "gemma3", "paligemma",
                "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "qwen3_5", "glm4v", "idefics3", "smolvlm", "mllama"]


def _two_image_pair(*, first: str, second: str, wrong: str) -> dict:
    """A pair whose prompt shows two images (their order must survive the shortcut)."""
    blobs = [png(colour=first), png(colour=second, shape="circle")]
    prompt = [message("user", [image_part(), image_part(), text_part("What colour is the circle?")])]
    chosen, rejected = [message("assistant", [text_part(second)])], [message("assistant", [text_part(wrong)])]
    return {"id": preference_row_id(image_hashes=[hashlib.sha256(b).hexdigest() for b in blobs], prompt=prompt,
                                    chosen=chosen, rejected=rejected),
            "task": PREFERENCE_TASK, "source": "test", "images": [{"bytes": b, "path": None} for b in blobs],
            "messages": prompt, "answers": [second], "meta": "{}", "chosen": chosen, "rejected": rejected}


def _model_and_batch(family: str, rows: list[dict], *, targets: object = ("q_proj", "v_proj")):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

    from vlmtrain.data.collate import ChatCollator
    from vlmtrain.models.families import family_of
    from vlmtrain.training.dpo import PairCollator

    folder = tiny_dir(family)
    processor = AutoProcessor.from_pretrained(str(folder))
    fam = family_of(AutoConfig.from_pretrained(str(folder)).model_type)
    batch = PairCollator(chat=ChatCollator(processor=processor, max_length=2048, family=fam))(rows)
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForImageTextToText.from_pretrained(str(folder)),
                           LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False))
    return model.eval(), batch, fam


class VisionCalls:
    """A forward hook on the family's vision module: how often it runs, and on how many input rows."""

    def __init__(self, model, fam) -> None:
        self.calls, self.rows = 0, 0
        module = model.get_base_model().get_submodule(fam.vision[0])
        self.handle = module.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs, output) -> None:
        pixels = args[0] if args else kwargs.get("pixel_values", kwargs.get("hidden_states"))
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        self.calls += 1
        self.rows += int(grid.shape[0]) if grid is not None else int(pixels.shape[0])


@pytest.mark.parametrize("family", ALL_FAMILIES)
def test_once_per_pair_equals_the_plain_forward_and_halves_the_vision_work(family):
    from vlmtrain.training.dpo import pair_logps
    from vlmtrain.training.dpo_images import PROVED, why_not_once

    rows = colour_pairs()[:3]
    model, batch, fam = _model_and_batch(family, rows)
    counter = VisionCalls(model, fam)
    plain = {ref: pair_logps(model=model, batch=batch, reference=ref, once=False)[0] for ref in (True, False)}
    plain_calls, plain_rows = counter.calls, counter.rows
    counter.calls = counter.rows = 0
    once = {ref: pair_logps(model=model, batch=batch, reference=ref)[0] for ref in (True, False)}
    counter.handle.remove()
    for ref in (True, False):
        torch.testing.assert_close(once[ref], plain[ref], atol=1e-5, rtol=0)
    assert not torch.allclose(once[True], once[False])  # the adapter matters: a real comparison
    if family in PROVED:
        assert why_not_once(model) is None
        assert counter.calls == 2 and plain_calls == 2  # one vision call per forward (reference, policy)
        assert counter.rows * 2 == plain_rows  # each pair's image(s) once instead of once per side
    else:
        assert family in why_not_once(model)  # refused by name; the exact 2B path runs
        assert (counter.calls, counter.rows) == (plain_calls, plain_rows)


@pytest.mark.parametrize("family", ["llava", "qwen2_vl", "idefics3"])
def test_pairs_with_two_images_keep_their_image_order(family):
    from vlmtrain.training.dpo import pair_logps

    rows = [_two_image_pair(first="red", second="blue", wrong="green"),
            _two_image_pair(first="yellow", second="green", wrong="red")]
    model, batch, fam = _model_and_batch(family, rows)
    counter = VisionCalls(model, fam)
    once = pair_logps(model=model, batch=batch, reference=False)[0]
    once_rows = counter.rows
    plain = pair_logps(model=model, batch=batch, reference=False, once=False)[0]
    counter.handle.remove()
    torch.testing.assert_close(once, plain, atol=1e-5, rtol=0)
    assert once_rows * 2 == counter.rows - once_rows
    if family == "llava":
        assert once_rows == 4  # two pairs x two images, each encoded once


def test_a_training_step_encodes_each_pair_image_once_for_policy_and_reference(tmp_path):
    """LoRA on the LLM only: the vision side is frozen, so one encoding serves the policy and the
    reference; the loss and its gradients equal the plain path's."""
    from transformers import TrainingArguments

    from vlmtrain.config.dpo import DpoSection
    from vlmtrain.training.dpo import dpo_loss, pair_logps
    from vlmtrain.training.dpo_trainer import DpoTrainer

    rows = colour_pairs()
    model, batch, fam = _model_and_batch("llava", rows, targets=r".*language_model.*\.(q_proj|v_proj)")
    model.train()
    trainer = DpoTrainer(lengths=None, model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True,
                                                                           report_to=[]),
                         train_dataset=None, data_collator=None, processing_class=None, callbacks=[])
    trainer.dpo = DpoSection(beta=0.1)
    counter = VisionCalls(model, fam)
    loss = trainer.compute_loss(model, batch)
    assert (counter.calls, counter.rows) == (1, len(rows))  # one vision call, one row per pair image
    loss.backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    reference = pair_logps(model=model, batch=batch, reference=True, once=False)[0]
    policy, tokens = pair_logps(model=model, batch=batch, reference=False, once=False)
    plain, _ = dpo_loss(policy=policy, reference=reference, tokens=tokens, beta=0.1, loss_type="sigmoid")
    plain.backward()
    counter.handle.remove()
    assert abs(float(loss) - float(plain)) < 1e-6 and ours
    for name, grad in ours.items():
        torch.testing.assert_close(grad, dict(model.named_parameters())[name].grad, atol=1e-6, rtol=1e-5)


def test_an_adapter_on_the_vision_side_encodes_once_per_model_state():
    """LoRA reaching the vision tower: the reference (adapter disabled) sees other features than the
    policy, so each encodes once; still equal to the plain path."""
    from vlmtrain.training.dpo_images import images_frozen
    from vlmtrain.training.dpo_trainer import shared_images

    model, batch, _ = _model_and_batch("llava", colour_pairs()[:2])
    assert any("vision_tower" in n and "lora_" in n for n, _ in model.named_parameters())
    assert not images_frozen(model) and shared_images(model=model, batch=batch) is None


def test_pairs_whose_image_inputs_differ_take_the_plain_path():
    from vlmtrain.training.dpo_images import encode_pair_images

    model, batch, _ = _model_and_batch("llava", [pair_row(colour="red", wrong="blue")])
    batch = {**batch, "pixel_values": torch.cat([batch["pixel_values"][:1], batch["pixel_values"][:1] + 1])}
    assert encode_pair_images(model=model, batch=batch) is None  # encoding once would not be exact
