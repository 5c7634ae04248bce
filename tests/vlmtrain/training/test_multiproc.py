"""The same config under `torchrun --nproc_per_node 2` (CPU, gloo): both ranks log the same loss, only
rank 0 writes the run folder, and the adapter has the single-process run's tensor names and shapes; a
continual run under `torchrun -m vlmtrain` writes one accuracy matrix and exits cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from train_rows import COLOURS, save_dataset, vqa_row

from vlmtrain.cli import main

RANK_LOG = """
import json, os, sys
from transformers import TrainerCallback
from vlmtrain.config.train import load_train_config
from vlmtrain.recipes.finetune import FinetuneRecipe

class RankLog(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            with open(os.path.join(sys.argv[2], f"loss.rank{args.process_index}.jsonl"), "a") as f:
                f.write(json.dumps({"step": state.global_step, "loss": logs["loss"], "world": args.world_size}) + "\\n")

recipe = FinetuneRecipe(config=load_train_config(sys.argv[1]))
recipe.setup()
recipe.trainer.add_callback(RankLog())
recipe.train()
recipe.cleanup()
"""


def _config(path: Path, *, model: Path, data: Path, out: Path) -> Path:
    path.write_text(
        f"name: ddp\nseed: 0\nmodel: {{path: {model}}}\ndata: {{path: {data}, max_length: 64}}\n"
        "lora: {r: 4, alpha: 8, dropout: 0.0}\n"
        "train: {steps: 3, batch_size: 2, lr: 5.0e-3, device: cpu, group_by_length: true}\n"
        f"output: {{dir: {out}}}\n"
    )
    return path


def _tensors(path: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    with safe_open(str(path / "adapter_model.safetensors"), "pt") as f:
        names = list(f.keys())
        return {k: tuple(f.get_slice(k).get_shape()) for k in names}


@pytest.mark.slow
def test_torchrun_two_processes_agree_and_save_the_same_adapter(tiny_llava, colour_dataset, tmp_path):
    single = _config(tmp_path / "one.yaml", model=tiny_llava, data=colour_dataset, out=tmp_path / "one")
    done = CliRunner().invoke(main, ["run", str(single)])
    assert done.exit_code == 0, done.output + repr(done.exception)

    config = _config(tmp_path / "two.yaml", model=tiny_llava, data=colour_dataset, out=tmp_path / "two")
    script = tmp_path / "rank_log.py"
    script.write_text(RANK_LOG)
    torchrun = [sys.executable, "-m", "torch.distributed.run"]  # this interpreter, whatever is on PATH
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [*torchrun, "--standalone", "--nproc_per_node", "2", str(script), str(config), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    ranks = [[json.loads(line) for line in (tmp_path / f"loss.rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert [r["step"] for r in ranks[0]] == [1, 2, 3] and ranks[0][0]["world"] == 2
    assert [r["loss"] for r in ranks[0]] == pytest.approx([r["loss"] for r in ranks[1]], rel=1e-6)
    log = [json.loads(line) for line in (tmp_path / "two" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]  # rank 0 alone wrote the log: no duplicate lines
    assert [r["loss"] for r in log] == pytest.approx([r["loss"] for r in ranks[0]])
    assert _tensors(tmp_path / "two") == _tensors(tmp_path / "one")


@pytest.mark.slow
def test_torchrun_continual_run_through_the_cli_writes_one_matrix(tiny_llava, tmp_path):
    """`torchrun -m vlmtrain run` on a 2-stage replay + EWC + LwF sequence: both ranks train and score, rank 0
    alone writes continual.json, the per-stage logs (no duplicate lines) and the adapter, and the run exits 0."""
    rows = [{**vqa_row(colour=c), "task": "colour" if i % 2 else "name", "answers": [c]} for i, c in
            enumerate(list(COLOURS) * 2)]
    data = save_dataset(path=tmp_path / "data", splits={"train": rows * 2, "validation": rows[:4]})
    config = tmp_path / "c.yaml"
    config.write_text(
        f"name: cl\nseed: 0\nmodel: {{path: {tiny_llava}}}\ndata: {{path: {data}, max_length: 64}}\n"
        "lora: {r: 4, alpha: 8, dropout: 0.0}\n"
        "train: {steps: 3, batch_size: 2, lr: 1.0e-2, scheduler: constant, device: cpu}\n"
        "continual: {sequence: [{name: a, tasks: [name]}, {name: b, tasks: [colour]}], strategy: [replay, ewc, lwf], "
        "replay: {size: 4}, ewc: {lambda: 10.0, num_samples: 4}, eval: {max_new_tokens: 3, batch_size: 4}}\n"
        f"output: {{dir: {tmp_path / 'run'}}}\n"
    )
    torchrun = [sys.executable, "-m", "torch.distributed.run"]  # this interpreter, whatever is on PATH
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([*torchrun, "--standalone", "--nproc_per_node", "2", "-m", "vlmtrain", "run", str(config)],
                          env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = tmp_path / "run"
    record = json.loads((run / "continual.json").read_text())
    assert record["stages"] == ["a", "b"] and len(record["matrix"]) == 2 and "bwt" in record
    for stage in ("0-a", "1-b"):
        log = [json.loads(line) for line in (run / "tasks" / stage / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log] == [1, 2, 3]  # rank 0 alone wrote it
    assert (run / "adapter_model.safetensors").is_file()
