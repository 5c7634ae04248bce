"""vlmtrain's own recipes on a GPU: each tiny family trains (bf16 LoRA, QLoRA, staged) and then answers.

    python benchmarks/gpu_smoke.py             # on a GPU machine: about a minute after imports
    python benchmarks/gpu_smoke.py --cpu-ok    # the same on a machine without one (a dry run)

The CI suite runs every recipe on CPU; this runs the same code with `device: auto` and `precision: auto`
(bf16 on an H100), so the device paths (mixed precision, 4-bit CUDA kernels, generation on the GPU, the
eval callback, staged weight replay) are exercised where users run them. Each case trains on a
memorisable colour set and must bring its loss below half of the first step's; the run folder is then
loaded with `vlmtrain.evaluation.predict.load_run` and scored with `vlmtrain.evaluation.evaluate`. Prints one line per case
(with the GPU memory training peaked at, and the device the loaded run evaluates on) and exits non-zero
if any case fails or, on a GPU machine, trains or evaluates off the GPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "vlmtrain"))

TRAIN = "train: {steps: 30, batch_size: 4, lr: 1.0e-2, scheduler: constant, log_every: 1}\n"
CASES = {
    "llava lora bf16": ("llava", "model_dtype: bfloat16\nlora: {r: 8, alpha: 16, dropout: 0.0}\n" + TRAIN),
    "llava qlora nf4": ("llava", "model_dtype: bfloat16\nmethod: qlora\n"
                        "quant: {bits: 4, compute_dtype: bfloat16}\nlora: {r: 8, alpha: 16, dropout: 0.0}\n" + TRAIN),
    "llava stages": ("llava", "model_dtype: bfloat16\n"
                     "train: {batch_size: 4, lr: 1.0e-2, scheduler: constant}\nstages:\n"
                     "  - {name: projector, components: {projector: {train: full, lr: 1.0e-2}}, train: {steps: 10}}\n"
                     "  - {name: sft, components: {projector: {train: full, lr: 1.0e-3}, llm: {train: lora, r: 8}},"
                     " train: {steps: 30}}\n"),
    "llava qlora stages": ("llava", "model_dtype: bfloat16\nmethod: qlora\nquant: {bits: 4, compute_dtype: bfloat16}\n"
                           "train: {batch_size: 4, lr: 1.0e-2, scheduler: constant}\nstages:\n"
                           "  - {name: align, components: {projector: {train: full, lr: 1.0e-2}, llm: {train: lora, r: 8}},"
                           " train: {steps: 10}}\n"
                           "  - {name: sft, components: {projector: {train: full, lr: 1.0e-3}, llm: {train: lora, r: 8}},"
                           " train: {steps: 30}}\n"),
    "qwen2_vl lora bf16": ("qwen2_vl", "model_dtype: bfloat16\nlora: {r: 8, alpha: 16, dropout: 0.0}\n" + TRAIN),
    "idefics3 lora bf16": ("idefics3", "model_dtype: bfloat16\nlora: {r: 8, alpha: 16, dropout: 0.0}\n" + TRAIN),
    "paligemma lora bf16": ("paligemma", "model_dtype: bfloat16\nlora: {r: 8, alpha: 16, dropout: 0.0}\n" + TRAIN),
}


def _config(*, folder: Path, model: Path, data: Path, body: str, name: str) -> Path:
    dtype = "bfloat16" if "model_dtype: bfloat16" in body else "float32"
    body = body.replace("model_dtype: bfloat16\n", "")
    path = folder / f"{name.replace(' ', '_')}.yaml"
    path.write_text(f"name: smoke\nseed: 0\nmodel: {{path: {model}, dtype: {dtype}}}\n"
                    f"data: {{path: {data}, max_length: 256}}\noutput: {{dir: {folder / name.replace(' ', '_')}}}\n"
                    f"eval: {{every: 15, data: {data}, limit: 4, max_new_tokens: 8}}\n{body}", encoding="utf-8")
    return path


def _case(*, name: str, family: str, body: str, folder: Path, data: Path) -> dict:
    import datasets

    from vlmtrain.config.train import load_train_config
    from vlmtrain.evaluation.evaluate import evaluate
    from vlmtrain.evaluation.predict import load_run
    from vlmtrain.models.tiny.registry import write_tiny
    from vlmtrain.recipes.run import run

    model = folder / "models" / family
    if not model.is_dir():
        write_tiny(out=model, family=family, seed=0)
    import torch

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    run_dir = run(config=load_train_config(_config(folder=folder, model=model, data=data, body=body, name=name)),
                  echo=lambda _: None)
    seconds = time.perf_counter() - start
    train_mib = torch.cuda.max_memory_allocated() / 2**20 if cuda else 0.0  # > 0: training ran on the GPU
    logs = sorted(run_dir.glob("stages/*/log.jsonl")) or [run_dir / "log.jsonl"]
    losses = [r["loss"] for r in map(json.loads, logs[-1].read_text().splitlines()) if "loss" in r]
    loaded, processor = load_run(run_dir=run_dir)
    device = str(next(loaded.parameters()).device)
    scores = evaluate(model=loaded, processor=processor, dataset=datasets.load_from_disk(str(data))["validation"],
                      max_new_tokens=8, batch_size=4)
    accuracy = scores.metrics["overall"]["vqa_accuracy"]
    return {"case": name, "ok": losses[-1] < 0.5 * losses[0], "first": losses[0], "last": losses[-1],
            "accuracy": accuracy, "seconds": seconds, "device": device, "train_mib": train_mib}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-ok", action="store_true", help="run without a GPU (a dry run of the same code)")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    args = parser.parse_args()

    import torch
    from train_rows import COLOURS, save_dataset, vqa_row

    if not torch.cuda.is_available() and not args.cpu_ok:
        raise SystemExit("no CUDA device: pass --cpu-ok for a dry run")
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    print(f"device: {name}, torch {torch.__version__}")
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rows = [{**vqa_row(colour=c), "answers": [c]} for c in COLOURS]
        data = save_dataset(path=folder / "data", splits={"train": rows * 4, "validation": rows})
        print(f"{'case':<22} {'ok':<4} {'first loss':>10} {'last loss':>10} {'accuracy':>9} {'train s':>8} "
              f"{'train GPU MiB':>13}  eval device")
        for case in args.cases.split(","):
            family, body = CASES[case]
            try:
                r = _case(name=case, family=family, body=body, folder=folder, data=data)
            except Exception:
                failed += 1
                print(f"{case:<22} FAIL\n{traceback.format_exc()[-3000:]}")
                continue
            on_gpu = not torch.cuda.is_available() or (r["train_mib"] > 0 and r["device"].startswith("cuda"))
            r["ok"] = r["ok"] and on_gpu
            failed += not r["ok"]
            print(f"{case:<22} {'yes' if r['ok'] else 'NO':<4} {r['first']:>10.4f} {r['last']:>10.4f} "
                  f"{r['accuracy']:>9.2f} {r['seconds']:>8.1f} {r['train_mib']:>13.1f}  {r['device']}")
    print(f"{len(args.cases.split(',')) - failed} of {len(args.cases.split(','))} cases passed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
