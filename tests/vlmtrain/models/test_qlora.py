"""QLoRA on CPU (bitsandbytes 4-bit NF4 and 8-bit): gradients reach every LoRA parameter, the loss falls,
and nothing in our setup runs the eval-mode forward that would silently kill LoRA gradients."""

from __future__ import annotations

import io
import json

import pytest
from tiny_cache import config_text, tiny_dir
from train_rows import COLOURS, vqa_row


def _setup(*, bits: int, data, write_config, tmp_path, steps: int = 6):
    from vlmtrain.config.train import load_train_config
    from vlmtrain.recipes.finetune import FinetuneRecipe

    body = (f"method: qlora\nquant: {{bits: {bits}, quant_type: nf4, double_quant: true}}\n"
            "lora: {r: 8, alpha: 16, dropout: 0.0}\n"
            f"train: {{steps: {steps}, batch_size: 4, lr: 1.0e-2, scheduler: constant, device: cpu}}\n")
    path = write_config(config_text(model=tiny_dir("llava"), data=data, out=tmp_path / "run", body=body))
    recipe = FinetuneRecipe(config=load_train_config(path), echo=lambda _: None)
    recipe.setup()  # data diagnostics, quantised load, LoRA, optimizer groups: no forward pass
    return recipe


def _batch(recipe):
    from PIL import Image

    rows = [vqa_row(colour=c) for c in COLOURS]
    rows = [{**r, "images": [Image.open(io.BytesIO(i["bytes"])) for i in r["images"]]} for r in rows]
    return recipe.collator(rows)


@pytest.mark.parametrize("bits", [4, 8])
def test_every_lora_param_gets_gradients_and_the_loss_falls(bits, colour_dataset, write_config, tmp_path):
    recipe = _setup(bits=bits, data=colour_dataset, write_config=write_config, tmp_path=tmp_path)
    model = recipe.model
    quantised = "Linear4bit" if bits == 4 else "Linear8bitLt"
    assert any(type(m).__name__ == quantised for m in model.modules())
    layer = "base_model.model.model.language_model.layers.0."
    assert type(model.get_submodule(layer + "self_attn.q_proj.base_layer")).__name__ == quantised
    assert type(model.get_submodule(layer + "self_attn.k_proj.base_layer")).__name__ == "Linear"  # 32 wide: skipped
    vision = {type(m).__name__ for n, m in model.named_modules() if ".vision_tower." in n and n.endswith("fc1")}
    assert vision == {"Linear"}  # the vision tower is never quantised
    batch = _batch(recipe)
    if bits == 4:  # trap (1): an eval-mode forward before training is refused, not silently allowed
        model.eval()
        with pytest.raises(RuntimeError, match="no gradients"):
            model(**batch)
    model.train()
    recipe.trainer.create_optimizer()
    optimizer = recipe.trainer.optimizer
    lora = {n: p for n, p in model.named_parameters() if "lora_" in n}
    assert lora and all(p.requires_grad for p in lora.values())
    losses = []
    for step in range(8):
        optimizer.zero_grad()
        out = model(**batch)
        out.loss.backward()
        losses.append(out.loss.item())
        # B starts at zero, so A's first gradient is zero by construction; from step 1 on all must move
        checked = {n: p for n, p in lora.items() if step > 0 or "lora_B" in n}
        dead = [n for n, p in checked.items() if p.grad is None or not p.grad.abs().sum() > 0]
        assert not dead, f"step {step}: no gradient for {dead[:3]}"
        optimizer.step()
    assert losses[-1] < 0.5 * losses[0], losses


def test_qlora_run_trains_through_the_trainer(colour_dataset, write_config, tmp_path):
    recipe = _setup(bits=4, data=colour_dataset, write_config=write_config, tmp_path=tmp_path, steps=10)
    recipe.train()
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 10 and log[-1]["loss"] < 0.5 * log[0]["loss"], [r["loss"] for r in log]
    assert (tmp_path / "run" / "adapter_model.safetensors").is_file()


@pytest.mark.parametrize(("upcast", "precision"), [(False, "bf16"), (True, "bf16"), (False, "fp32")])
def test_bf16_qlora_keeps_frozen_weights_in_bf16_unless_upcast_and_trains(upcast, precision, colour_dataset,
                                                                            write_config, tmp_path):
    """The frozen unquantised weights stay bf16 by default (peft's prepare would make them fp32 and the
    activations with them); under bf16 autocast what trains is fp32; without autocast everything stays
    bf16 (a fp32 projector would get bf16 inputs); gradients flow and the loss falls in each case."""
    import contextlib

    import torch

    from vlmtrain.config.train import load_train_config
    from vlmtrain.recipes.finetune import FinetuneRecipe

    body = (f"method: qlora\nquant: {{bits: 4, compute_dtype: bfloat16, upcast: {str(upcast).lower()}}}\n"
            "components: {projector: {train: full, lr: 1.0e-3}, llm: {train: lora, r: 8}}\n"
            f"train: {{steps: 4, batch_size: 4, lr: 1.0e-2, scheduler: constant, device: cpu, precision: {precision}}}\n")
    text = config_text(model=tiny_dir("llava"), data=colour_dataset, out=tmp_path / "run", body=body)
    path = write_config(text.replace("model: {path: ", "model: {dtype: bfloat16, path: "))
    recipe = FinetuneRecipe(config=load_train_config(path), echo=lambda _: None)
    recipe.setup()
    model = recipe.model
    dtypes = {n: p.dtype for n, p in model.named_parameters()}
    norms = {d for n, d in dtypes.items() if ".language_model." in n and "norm" in n}
    assert norms == {torch.float32 if upcast else torch.bfloat16}
    vision = {d for n, d in dtypes.items() if ".vision_tower." in n}
    assert vision == {torch.float32 if upcast else torch.bfloat16}
    trained = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}
    assert any("lora_" in n for n in trained) and any("multi_modal_projector" in n for n in trained)
    lora_dtypes = {d for n, d in trained.items() if "lora_" in n}
    assert lora_dtypes == {torch.float32}  # peft keeps adapters in fp32
    full = {d for n, d in trained.items() if "lora_" not in n}
    assert full == {torch.float32 if precision == "bf16" or upcast else torch.bfloat16}

    batch = _batch(recipe)
    model.train()
    recipe.trainer.create_optimizer()
    losses = []
    for _ in range(6):
        recipe.trainer.optimizer.zero_grad()
        autocast = torch.autocast(device_type="cpu", dtype=torch.bfloat16) if precision == "bf16" else None
        with autocast or contextlib.nullcontext():
            loss = model(**batch).loss
        loss.backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in model.named_parameters()
                   if p.requires_grad and "lora_A" not in n)
        losses.append(loss.item())
        recipe.trainer.optimizer.step()
    assert losses[-1] < 0.7 * losses[0], losses
    # generation outside the Trainer's autocast works on the mixed-dtype model (the eval callback's path)
    import datasets

    from vlmtrain.evaluation.evaluate import evaluate

    rows = datasets.load_from_disk(str(colour_dataset))["train"].select(range(2))
    result = evaluate(model=model, processor=recipe.processor, dataset=rows, max_new_tokens=2, batch_size=2)
    assert len(result.predictions) == 2
