"""Multi-task training: per-task losses in the log, uncertainty weights in their own wd=0 group, the
task sampler's position restored on resume, and config errors that name the YAML key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from train_rows import COLOURS, make_row, png, save_dataset, vqa_row

from vlmdata.config.errors import ConfigError
from vlmdata.schema import image_part, message, text_part
from vlmtrain.config.train import load_train_config
from vlmtrain.recipes.finetune import FinetuneRecipe


def caption_row(*, colour: str) -> dict:
    msgs = [message("user", [image_part(), text_part("Describe the image.")]),
            message("assistant", [text_part(f"a {colour} square on a grey background")])]
    return make_row(images=[png(colour=colour)], messages=msgs, task="caption")


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [vqa_row(colour=c) for c in COLOURS] * 3 + [caption_row(colour=c) for c in COLOURS]
    return save_dataset(path=tmp_path_factory.mktemp("mt") / "data", splits={"train": rows})


def _config(path: Path, *, model: Path, data: Path, out: Path, multitask: str, train: str = "",
            steps: int = 4) -> Path:
    path.write_text(
        f"name: mt\nseed: 0\nmodel: {{path: {model}}}\ndata: {{path: {data}, max_length: 64}}\n"
        "lora: {r: 4, alpha: 8, dropout: 0.0}\n"
        f"train: {{steps: {steps}, batch_size: 2, lr: 2.0e-2, weight_decay: 0.1, scheduler: constant, device: cpu{train}}}\n"
        f"multitask: {multitask}\noutput: {{dir: {out}}}\n"
    )
    return path


def _log(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_per_task_losses_are_logged_and_uncertainty_weights_train_without_decay(tiny_llava, two_tasks, tmp_path):
    cfg = _config(tmp_path / "a.yaml", model=tiny_llava, data=two_tasks, out=tmp_path / "run",
                  multitask="{sampling: {temperature: 1.0, homogeneous_batches: true}, "
                            "loss: {weighting: uncertainty, lr: 0.2}}", steps=8)  # one epoch
    recipe = FinetuneRecipe(config=load_train_config(cfg), echo=lambda _: None)
    recipe.setup()
    recipe.train()
    log = _log(tmp_path / "run")
    assert [r["step"] for r in log] == list(range(1, 9))
    tasks = {k for r in log for k in r if k.startswith("loss/")}
    assert tasks == {"loss/vqa", "loss/caption"}
    assert all(len([k for k in r if k.startswith("loss/")]) == 1 for r in log)  # homogeneous: one task a batch
    assert all({"log_var/vqa", "weight/caption"} <= set(r) for r in log)
    s = recipe.trainer.weighting.log_vars
    (group,) = [g for g in recipe.trainer.optimizer.param_groups if any(p is s for p in g["params"])]
    assert group["weight_decay"] == 0.0 and len(group["params"]) == 1 and group["lr"] == pytest.approx(0.2)
    assert any(g["weight_decay"] == 0.1 for g in recipe.trainer.optimizer.param_groups)
    assert torch.count_nonzero(s.detach()) == 2  # both s_t moved away from their init 0


def test_sampler_position_and_uncertainty_restored_on_resume(tiny_llava, two_tasks, tmp_path):
    mt = "{sampling: {temperature: 2.0}, loss: {weighting: uncertainty}}"
    cfg = _config(tmp_path / "a.yaml", model=tiny_llava, data=two_tasks, out=tmp_path / "run", multitask=mt,
                  train=", save_every: 2")
    recipe = FinetuneRecipe(config=load_train_config(cfg), echo=lambda _: None)
    recipe.setup()
    recipe.train()
    whole = _log(tmp_path / "run")
    state = torch.load(tmp_path / "run" / "checkpoint-2" / "multitask_state.pt", weights_only=True)
    assert state["sampler"] == {"epoch": 0, "position": 4}  # 2 steps x 2 rows of a 16-row epoch
    final_s = recipe.trainer.weighting.log_vars.detach().clone()

    shutil.rmtree(tmp_path / "run" / "checkpoint-4")
    resumed = FinetuneRecipe(config=load_train_config(cfg), echo=lambda _: None, resume=True)
    resumed.setup()
    resumed.train()
    assert resumed.trainer.consumed == {"epoch": 0, "position": 8}
    again = _log(tmp_path / "run")
    assert [r["step"] for r in again] == [1, 2, 3, 4]
    for a, b in zip(whole, again, strict=True):
        assert {k: v for k, v in a.items() if k.startswith(("loss", "log_var"))} == pytest.approx(
            {k: v for k, v in b.items() if k.startswith(("loss", "log_var"))}, rel=1e-4, abs=1e-5)
    assert torch.allclose(resumed.trainer.weighting.log_vars.detach(), final_s, atol=1e-5)


def test_unknown_task_in_weights_names_the_key(tiny_llava, two_tasks, tmp_path):
    cfg = _config(tmp_path / "a.yaml", model=tiny_llava, data=two_tasks, out=tmp_path / "run",
                  multitask="{sampling: {weights: {vqa: 1.0, colour: 2.0}}}")
    recipe = FinetuneRecipe(config=load_train_config(cfg), echo=lambda _: None)
    with pytest.raises(ConfigError, match=r"multitask.sampling.weights.*colour"):
        recipe.setup()


def test_static_weights_need_static_weighting(tiny_llava, two_tasks, tmp_path):
    cfg = _config(tmp_path / "a.yaml", model=tiny_llava, data=two_tasks, out=tmp_path / "run",
                  multitask="{loss: {weighting: equal, weights: {vqa: 2.0}}}")
    with pytest.raises(ConfigError, match=r"multitask.loss"):
        load_train_config(cfg)
