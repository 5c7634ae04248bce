"""Packing is exact: a packed batch gives every row the loss, gradients and logits it has alone, per family;
the bin packer is deterministic and lossless; unsupported families are refused by name; runs resume."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_cache import tiny_dir
from train_rows import COLOURS, KILL_AFTER, make_row, png, save_dataset, vqa_row

from vlmdata.schema import image_part, message, text_part
from vlmtrain.data.packing import (
    PackedCollator,
    attach_packed_mrope,
    pack_rows,
    packed_row_losses,
    packed_task_losses,
    packing_problem,
    packing_report,
    row_segments,
)
from vlmtrain.models.families import FAMILIES, family_of
from vlmtrain.models.packing_masks import attach_packed_block_masks

SUPPORTED = sorted(name for name, f in FAMILIES.items() if f.packing_supported)


def test_the_supported_families_include_1d_mrope_and_bidirectional_image_attention():
    assert {"llava", "idefics3", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "gemma3", "llava_next", "llava_onevision",
            "smolvlm", "mistral3", "internvl", "aya_vision"} <= set(SUPPORTED)
    assert {"qwen3_5", "mllama", "paligemma"}.isdisjoint(SUPPORTED)  # not proved: refused by name


# ---- the bin packer ---------------------------------------------------------------------------
def test_pack_rows_is_lossless_within_capacity_and_seeded():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 120, size=300).tolist()
    packs = pack_rows(lengths=lengths, capacity=128, seed=3)
    assert sorted(i for p in packs for i in p) == list(range(300))  # every row once
    assert all(sum(lengths[i] for i in p) <= 128 for p in packs)
    assert packs == pack_rows(lengths=lengths, capacity=128, seed=3)
    assert packs != pack_rows(lengths=lengths, capacity=128, seed=4)
    assert len(packs) < 1.15 * sum(lengths) / 128 + 2  # first-fit-decreasing: close to the lower bound
    report = packing_report(lengths=lengths, tasks=["t"] * 300, packs=packs, capacity=128, batch_size=8, seed=0)
    assert report.efficiency > 0.85 > report.real_tokens / report.padded_slots  # packed vs random padded batches


def test_pack_rows_refuses_a_row_over_capacity():
    with pytest.raises(ValueError, match="more than the pack capacity 10"):
        pack_rows(lengths=[3, 11], capacity=10, seed=0)


def test_packing_report_counts_efficiency_and_task_mix():
    lengths = [10, 90, 10, 90, 50, 50]
    tasks = ["vqa", "caption", "vqa", "caption", "vqa", "caption"]
    packs = pack_rows(lengths=lengths, capacity=100, seed=0)
    report = packing_report(lengths=lengths, tasks=tasks, packs=packs, capacity=100, batch_size=2, seed=0)
    assert report.real_tokens == 300 and report.rows == 6
    assert report.efficiency == pytest.approx(300 / (len(packs) * 100))
    assert report.mix == {"vqa": 0.5, "caption": 0.5}
    assert "efficiency" in report.text() and "vqa 50.0%" in report.text()


def test_packs_from_the_task_sampler_keep_its_temperature_mix(tmp_path):
    from vlmtrain.config.train import validate_train_config
    from vlmtrain.data.packing import row_stream
    from vlmtrain.data.sampler import TaskSampler

    data = save_dataset(path=tmp_path / "d", splits={"train": [vqa_row(colour="red")]})
    config = validate_train_config({"name": "p", "model": {"path": str(tiny_dir("llava"))},
                                    "data": {"path": str(data), "max_length": 64},
                                    "train": {"packing": True, "batch_size": 4},
                                    "multitask": {"sampling": {"temperature": 2.0, "num_samples": 400}}},
                                   base_dir=tmp_path)
    tasks = ["vqa"] * 900 + ["caption"] * 100
    stream = row_stream(config=config, tasks=tasks, sources=[""] * 1000)
    expected = TaskSampler(tasks=tasks, num_samples=400, temperature=2.0, seed=0).counts(epoch=0)
    lengths = [8 if t == "vqa" else 40 for t in tasks]
    packs = [[stream[i] for i in b] for b in pack_rows(lengths=[lengths[i] for i in stream], capacity=64, seed=0)]
    report = packing_report(lengths=lengths, tasks=tasks, packs=packs, capacity=64, batch_size=4, seed=0)
    assert report.mix == pytest.approx({t: n / 400 for t, n in expected.items()})  # exactly the sampler's draw
    assert report.step_mix_spread < 0.2  # windows keep each step near the mix (no task-homogeneous packs)


@pytest.mark.parametrize("pattern", ["causal", "sliding_window", "image_block", "across_rows"])
def test_packed_sdpa_equals_sdpa_under_the_models_mask(pattern):
    """Per-row SDPA on the mask's diagonal blocks == SDPA over the whole mask, for causal rows, a sliding window
    shorter than a row, a bidirectional image block; a mask with weight across rows goes to the stock SDPA."""
    import torch

    from vlmtrain.models.packed_attention import packed_sdpa

    torch.manual_seed(0)
    lengths = [5, 1, 9, 3]
    q, k, v = (torch.randn(1, 4, sum(lengths), 8) for _ in range(3))
    positions = torch.cat([torch.arange(n) for n in lengths]).unsqueeze(0)
    seg = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    idx = torch.arange(len(seg))
    allowed = idx[None, :] <= idx[:, None]
    if pattern == "sliding_window":
        allowed &= idx[None, :] > idx[:, None] - 3
    if pattern == "image_block":  # tokens 8..11 of row 2 attend to each other both ways
        block = (idx >= 8) & (idx < 12)
        allowed |= block[:, None] & block[None, :]
    mask = allowed & (seg[:, None] == seg[None, :])
    if pattern == "across_rows":
        mask[7, 2] = True
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2)
    module = torch.nn.Module()
    got, _ = packed_sdpa(module, q, k, v, mask[None, None], position_ids=positions)
    assert torch.allclose(got, want, atol=1e-6)


# ---- equivalence: the proof -------------------------------------------------------------------
def _decoded(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from PIL import Image

    return [{**r, "images": [Image.open(io.BytesIO(i["bytes"])) for i in r["images"]]} for r in rows]


def _rows() -> list[dict[str, Any]]:
    long_answer = ("Both are shapes on a grey background; the first is a blue square in the centre, the second a "
                   "green circle, also in the centre. Neither has a border, a shadow or any text, and both fill "
                   "about half of the picture, so they differ in colour and in shape only.")  # past a 64 window
    two = make_row(images=[png(colour="blue"), png(colour="green", shape="circle")], task="compare", messages=[
        message("user", [image_part(), text_part("Compare"), image_part(), text_part("these.")]),
        message("assistant", [text_part(long_answer)]),
    ])
    multi_turn = make_row(images=[png(colour="red")], messages=[
        message("user", [image_part(), text_part("What colour?")]),
        message("assistant", [text_part("red")]),
        message("user", [text_part("And the shape?")]),
        message("assistant", [text_part("a square")]),
    ])
    return [vqa_row(colour="yellow"), two, multi_turn, vqa_row(colour="blue", answer="blue, and square")]


@pytest.fixture(scope="module", params=[(f, a) for f in SUPPORTED for a in ("sdpa", "packed_sdpa")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def family_model(request: pytest.FixtureRequest) -> tuple[Any, Any, Any]:
    """Each supported family, under the stock SDPA block-diagonal mask and under `packed_sdpa` (per row)."""
    import torch

    from vlmtrain.models.packed_attention import use_packed_attention
    from vlmtrain.models.tiny.registry import FAMILIES as TINY

    name, attention = request.param
    torch.manual_seed(0)
    model, processor = TINY[name].build(seed=0)
    model.float().train()  # dropout is 0 in the tiny configs; train mode is what packing runs under
    family = family_of(model.config.model_type)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a projector initialised to zeros (Gemma 3) would hide the image from the text
        for param_name, param in model.named_parameters():
            if family.find_component(param_name) == "projector" and param.dim() > 1 and not param.any():
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    model.set_attn_implementation("sdpa")
    assert attach_packed_mrope(model) == hasattr(model.model, "get_rope_index")  # what the recipe does
    assert attach_packed_block_masks(model) == (name == "gemma3")
    if attention == "packed_sdpa":
        assert use_packed_attention(model) and model.config._attn_implementation == "packed_sdpa"
    return model, processor, family


def _collators(processor: Any, family: Any) -> tuple[Any, Any]:
    from vlmtrain.data.collate import ChatCollator

    inner = ChatCollator(processor=processor, max_length=512, family=family)
    return inner, PackedCollator(inner=inner, carry_tasks=True)


def test_packed_losses_and_gradients_equal_one_row_at_a_time(family_model):
    import torch

    model, processor, family = family_model
    inner, packer = _collators(processor, family)
    rows = _decoded(_rows())
    params = [p for p in model.parameters() if p.requires_grad]

    batch = packer([rows[:2], rows[2:]])  # two packs: one packed sequence for the step
    assert batch["input_ids"].shape[0] == 1 and "attention_mask" not in batch
    window = getattr(model.config.get_text_config(), "sliding_window", None)
    if window is not None and window < inner.max_length:  # a row past the window: sliding layers are exercised
        assert int(torch.bincount(row_segments(position_ids=batch["position_ids"])[0]).max()) > window
    tasks = batch.pop("tasks")
    model.zero_grad()
    out = model(**{k: v for k, v in batch.items() if k != "labels"})
    sums, counts = packed_row_losses(logits=out.logits, labels=batch["labels"], position_ids=batch["position_ids"])
    (sums.sum() / counts.sum()).backward()
    packed_grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in params]

    singles, single_sums, single_counts = [], [], []
    model.zero_grad()
    total = sum(int((inner([r])["labels"][0, 1:] != -100).sum()) for r in rows)
    for row in rows:
        alone = inner([row])
        o = model(**alone)
        n = int((alone["labels"][0, 1:] != -100).sum())
        (o.loss * n / total).backward()  # the token mean over the step, accumulated row by row
        singles.append(float(o.loss.detach()))
        single_sums.append(float(o.loss.detach()) * n)
        single_counts.append(n)
    assert (sums / counts).tolist() == pytest.approx(singles, abs=1e-5, rel=1e-5)  # per row, per token
    assert counts.tolist() == single_counts  # the same supervised tokens: assistant-only survives packing
    for p, g in zip(params, packed_grads, strict=True):
        assert torch.allclose(g, torch.zeros_like(p) if p.grad is None else p.grad, atol=1e-5, rtol=1e-4)
    assert any(float(g.abs().sum()) > 0 for g in packed_grads)
    # the model's own loss on the packed batch is the token mean of the step's rows
    assert float(model(**batch).loss.detach()) == pytest.approx(sum(single_sums) / total, abs=1e-5)
    # per-task losses reduce per original row, as `per_task_losses` does on padded rows
    from vlmtrain.training.losses import per_task_losses

    padded = inner(rows)
    ref_out = model(**padded)
    for reduction in ("token", "sample"):
        want = per_task_losses(logits=ref_out.logits, labels=padded["labels"], tasks=tasks, reduction=reduction)
        got = packed_task_losses(logits=out.logits, labels=batch["labels"], position_ids=batch["position_ids"],
                                 tasks=tasks, reduction=reduction)
        assert set(got) == {"vqa", "compare"}
        assert {k: float(v) for k, v in got.items()} == pytest.approx({k: float(v) for k, v in want.items()},
                                                                      abs=1e-5)


def test_a_row_never_sees_another_rows_image_or_text(family_model):
    import torch

    model, processor, family = family_model
    _, packer = _collators(processor, family)
    rows = _decoded(_rows())
    a, b = rows[0], rows[2]
    with torch.no_grad():
        base = packer([[a, b]])
        segments = row_segments(position_ids=base["position_ids"])[0]
        other = {**a, "images": _decoded([vqa_row(colour="green")])[0]["images"]}
        changed_image = packer([[other, b]])
        changed_text = packer([[_decoded([vqa_row(colour="yellow", question="A different, longer question?")])[0],
                                b]])
        logits = [model(**{k: v for k, v in x.items() if k not in ("labels", "tasks")}).logits[0]
                  for x in (base, changed_image, changed_text)]
    in_b = segments == 1
    assert torch.equal(base["input_ids"], changed_image["input_ids"])
    assert not torch.allclose(logits[0][~in_b], logits[1][~in_b], atol=1e-4)  # row A does see its own image
    assert torch.allclose(logits[0][in_b], logits[1][in_b], atol=1e-5)  # row B does not
    b_changed = row_segments(position_ids=changed_text["position_ids"])[0] == 1
    assert torch.allclose(logits[0][in_b], logits[2][b_changed], atol=1e-5)  # nor row A's text (of another length)


def test_mrope_positions_matter_when_packed():
    """Without per-row mRoPE (plain 1-D restarting positions) Qwen2-VL's packed losses are wrong: the hook is needed."""
    import torch

    from vlmtrain.models.tiny.registry import FAMILIES as TINY

    model, processor = TINY["qwen2_vl"].build(seed=0)
    model.float().eval()
    inner, packer = _collators(processor, family_of("qwen2_vl"))
    rows = _decoded(_rows()[:2])
    batch = packer([rows])
    batch.pop("tasks")
    with torch.no_grad():
        out = model(**batch)
        sums, counts = packed_row_losses(logits=out.logits, labels=batch["labels"],
                                         position_ids=batch["position_ids"])
        alone = [float(model(**inner([r])).loss) for r in rows]
    assert (sums / counts).tolist() != pytest.approx(alone, abs=1e-3)


def test_gemma3_image_blocks_need_the_packed_block_masks():
    """Without `attach_packed_block_masks`, transformers' packed mask reads the image blocks of Gemma 3's sliding
    layers at per-row positions, i.e. from another row: the losses drift (the hook is load-bearing)."""
    import torch

    from vlmtrain.models.tiny.registry import FAMILIES as TINY

    model, processor = TINY["gemma3"].build(seed=0)
    model.float().eval()
    model.set_attn_implementation("sdpa")
    with torch.no_grad():
        weight = model.model.multi_modal_projector.mm_input_projection_weight
        weight.copy_(torch.randn(weight.shape, generator=torch.Generator().manual_seed(1)) * 0.1)
    inner, packer = _collators(processor, family_of("gemma3"))
    rows = _decoded(_rows()[:2])
    batch = packer([rows])
    batch.pop("tasks")
    with torch.no_grad():
        alone = torch.tensor([float(model(**inner([r])).loss) for r in rows])

        def gap() -> float:
            out = model(**batch)
            sums, counts = packed_row_losses(logits=out.logits, labels=batch["labels"],
                                             position_ids=batch["position_ids"])
            return float((sums / counts - alone).abs().max())

        before = gap()
        assert attach_packed_block_masks(model)
        after = gap()
    assert before > 3e-5 and after < 1e-5


def test_qwen3_5_is_refused_because_its_linear_attention_leaks_across_rows():
    """Qwen3.5's Gated DeltaNet layers run over the whole packed sequence: the second row's loss changes when
    packed behind another row, so the family stays refused (this test fails if that ever stops being true)."""
    import torch

    from vlmtrain.models.tiny.registry import FAMILIES as TINY

    model, processor = TINY["qwen3_5"].build(seed=0)
    model.float().eval()
    model.set_attn_implementation("sdpa")
    assert attach_packed_mrope(model)
    inner, packer = _collators(processor, family_of("qwen3_5"))
    rows = _decoded([vqa_row(colour="yellow"), vqa_row(colour="blue", answer="blue, and square")])
    batch = packer([rows])
    batch.pop("tasks")
    with torch.no_grad():
        out = model(**batch)
        sums, counts = packed_row_losses(logits=out.logits, labels=batch["labels"], position_ids=batch["position_ids"])
        alone = [float(model(**inner([r])).loss) for r in rows]
    packed = (sums / counts).tolist()
    assert packed[0] == pytest.approx(alone[0], abs=1e-5)  # the first row has nothing before it
    assert abs(packed[1] - alone[1]) > 1e-4  # the second row reads the first one's state
    assert packing_problem(family=FAMILIES["qwen3_5"]) is not None


# ---- refusal and runs -------------------------------------------------------------------------
def test_unsupported_families_are_refused_by_name():
    refused = sorted(name for name, f in FAMILIES.items() if not f.packing_supported)
    assert refused  # paligemma (bidirectional attention over image + prefix) until it is proved
    for name in refused:
        problem = packing_problem(family=FAMILIES[name])
        assert problem is not None and f"'{name}'" in problem and "train.packing: false" in problem
        assert all(s in problem for s in SUPPORTED)
    assert packing_problem(family=FAMILIES["llava"]) is None


def test_vlmtrain_validate_refuses_packing_for_a_refused_family(tmp_path, colour_dataset):
    from vlmtrain.cli import main

    refused = next(name for name, f in sorted(FAMILIES.items()) if not f.packing_supported)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(f"name: t\nmodel: {{path: {tiny_dir(refused)}}}\ndata: {{path: {colour_dataset}, max_length: 64}}\n"
                   "train: {steps: 1, packing: true}\n")
    result = CliRunner().invoke(main, ["validate", str(cfg)])
    assert result.exit_code != 0 and "train.packing" in result.output and f"'{refused}'" in result.output
    assert "Traceback" not in result.output
    cfg.write_text(f"name: t\nmodel: {{path: {tiny_dir('llava')}}}\ndata: {{path: {colour_dataset}, max_length: 64}}\n"
                   "train: {steps: 1, packing: true}\n")
    assert CliRunner().invoke(main, ["validate", str(cfg)]).exit_code == 0


def test_a_packing_run_on_a_refused_family_stops_before_training(tmp_path, colour_dataset):
    from vlmtrain.cli import main

    refused = next(name for name, f in sorted(FAMILIES.items()) if not f.packing_supported)
    cfg = tmp_path / "t.yaml"
    cfg.write_text(f"name: t\nmodel: {{path: {tiny_dir(refused)}}}\ndata: {{path: {colour_dataset}, max_length: 64}}\n"
                   f"train: {{steps: 1, packing: true, device: cpu}}\noutput: {{dir: {tmp_path / 'out'}}}\n")
    result = CliRunner().invoke(main, ["run", str(cfg)])
    assert result.exit_code != 0
    assert "train.packing" in result.output and f"'{refused}'" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "log.jsonl").exists() or not (tmp_path / "out" / "log.jsonl").read_text()


def test_settings_packing_cannot_honour_are_refused_together(tmp_path):
    from vlmdata.config.errors import ConfigError
    from vlmtrain.config.train import validate_train_config

    data = save_dataset(path=tmp_path / "d", splits={"train": [vqa_row(colour="red")]})
    with pytest.raises(ConfigError) as err:
        validate_train_config({"name": "p", "model": {"path": str(tiny_dir("llava"))},
                               "data": {"path": str(data), "max_length": 64},
                               "train": {"packing": True, "group_by_length": True},
                               "multitask": {"sampling": {"homogeneous_batches": True}}}, base_dir=tmp_path)
    text = str(err.value)
    assert "train.group_by_length" in text and "multitask.sampling.homogeneous_batches" in text




def _config(path: Path, *, model: Path, data: Path, out: Path) -> Path:
    path.write_text(
        f"name: pk\nseed: 0\nmodel: {{path: {model}}}\ndata: {{path: {data}, max_length: 96}}\n"
        "lora: {r: 4, alpha: 8, dropout: 0.0}\n"
        "train: {steps: 6, batch_size: 1, lr: 5.0e-3, warmup_steps: 2, scheduler: linear, save_every: 3,\n"
        "        packing: true, device: cpu}\n"
        "multitask: {loss: {reduction: sample}}\n"
        f"output: {{dir: {out}}}\n"
    )
    return path


def _losses(run_dir: Path) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, (run_dir / "log.jsonl").read_text().splitlines()) if "loss" in r]


@pytest.mark.slow
def test_a_packed_multitask_run_trains_reports_and_resumes_exactly(tiny_llava, tmp_path):
    from vlmtrain.cli import main

    rows = [vqa_row(colour=c) for c in COLOURS] + [
        {**vqa_row(colour=c, question="Describe the image.", answer=f"a {c} square on a grey background, centred"),
         "task": "caption"} for c in COLOURS]
    data = save_dataset(path=tmp_path / "data", splits={"train": rows * 3})

    whole = _config(tmp_path / "a.yaml", model=tiny_llava, data=data, out=tmp_path / "a")
    done = CliRunner().invoke(main, ["run", str(whole)])
    assert done.exit_code == 0, done.output + repr(done.exception)
    assert "packing: 24 rows in" in done.output and "efficiency" in done.output
    saved = json.loads((tmp_path / "a" / "packing.json").read_text())
    assert saved["rows"] == 24 and 0 < saved["efficiency"] <= 1 and set(saved["mix"]) == {"vqa", "caption"}
    a = _losses(tmp_path / "a")
    assert [r["step"] for r in a] == [1, 2, 3, 4, 5, 6]
    assert all("loss/vqa" in r and "loss/caption" in r for r in a)  # both tasks in every packed step
    assert len({round(r["loss"], 4) for r in a}) > 1

    cut = _config(tmp_path / "b.yaml", model=tiny_llava, data=data, out=tmp_path / "b")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER, str(cut), "3"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = CliRunner().invoke(main, ["run", str(cut), "--resume"])
    assert resumed.exit_code == 0, resumed.output + repr(resumed.exception)
    b = _losses(tmp_path / "b")
    assert [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], rel=1e-4, abs=1e-5)


@pytest.mark.slow
def test_a_packed_gemma3_run_takes_the_block_masks_and_per_row_attention(tmp_path, colour_dataset):
    """`vlmtrain run` wiring for a family with its own packed masks: the recipe hooks Gemma 3's inner model,
    switches SDPA to `packed_sdpa`, and trains on packs."""
    from vlmtrain.config.train import load_train_config
    from vlmtrain.recipes.finetune import FinetuneRecipe

    cfg = tmp_path / "g.yaml"
    cfg.write_text(f"name: g\nseed: 0\nmodel: {{path: {tiny_dir('gemma3')}}}\n"
                   f"data: {{path: {colour_dataset}, max_length: 128}}\nlora: {{r: 4, alpha: 8, dropout: 0.0}}\n"
                   f"train: {{steps: 2, batch_size: 1, packing: true, device: cpu}}\noutput: {{dir: {tmp_path / 'g'}}}\n")
    said: list[str] = []
    recipe = FinetuneRecipe(config=load_train_config(cfg), echo=said.append)
    recipe.setup()
    inner = [m for m in recipe.model.modules() if type(m).__name__ == "Gemma3Model"]
    assert inner and inner[0]._forward_pre_hooks  # attach_packed_block_masks
    assert recipe.model.config._attn_implementation == "packed_sdpa"
    assert any(line.startswith("packing: ") and "efficiency" in line for line in said)
    recipe.train()
    losses = _losses(tmp_path / "g")
    assert [r["step"] for r in losses] == [1, 2] and all(np.isfinite(r["loss"]) for r in losses)
