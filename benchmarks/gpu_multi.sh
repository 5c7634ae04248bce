#!/usr/bin/env bash
# Multi-GPU check of `distributed:` strategies (run on a machine with >= 2 GPUs; not needed by the tests).
# For each strategy: a tiny Qwen2.5-VL LoRA run (and a QLoRA run for ddp/fsdp) under torchrun on every GPU;
# the run must finish and leave a complete adapter (tensor names and shapes equal to a single-GPU run's).
#   bash benchmarks/gpu_multi.sh
set -euo pipefail
GPUS=$(python -c "import torch; print(torch.cuda.device_count())")
if [ "$GPUS" -lt 2 ]; then echo "gpu_multi.sh needs at least 2 GPUs (found $GPUS)"; exit 1; fi
WORK=$(mktemp -d)
python -m vlmtrain tiny "$WORK/model" --family qwen2_5_vl
python - "$WORK" <<'PY'
import sys
sys.path.insert(0, "tests/vlmtrain")
from train_rows import COLOURS, save_dataset, vqa_row
save_dataset(path=f"{sys.argv[1]}/data", splits={"train": [vqa_row(colour=c) for c in COLOURS] * 8})
PY
run() {  # name, method, strategy, nproc
  cat > "$WORK/$1.yaml" <<YAML
name: $1
model: {path: $WORK/model}
data: {path: $WORK/data, max_length: 256}
method: $2
lora: {r: 8, alpha: 16, dropout: 0.0}
components: {projector: {train: full}, llm: {train: lora}}
train: {steps: 4, batch_size: 2, lr: 1.0e-3}
distributed: {strategy: $3}
output: {dir: $WORK/$1}
YAML
  torchrun --standalone --nproc_per_node "$4" -m vlmtrain run "$WORK/$1.yaml"
}
run single lora ddp 1
for strategy in ddp fsdp deepspeed_zero2 deepspeed_zero3; do
  if [[ $strategy == deepspeed* ]] && ! python -c "import deepspeed" 2>/dev/null; then echo "skip $strategy (no deepspeed)"; continue; fi
  run "lora-$strategy" lora "$strategy" "$GPUS"
done
run qlora-ddp qlora ddp "$GPUS"
run qlora-fsdp qlora fsdp "$GPUS"
python - "$WORK" <<'PY'
import sys
from pathlib import Path
from safetensors import safe_open
work = Path(sys.argv[1])
def shapes(folder):
    with safe_open(str(folder / "adapter_model.safetensors"), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
reference = shapes(work / "single")
for run in sorted(p for p in work.iterdir() if p.is_dir() and (p / "adapter_config.json").is_file()):
    ok = shapes(run) == reference and (run / "trained.safetensors").is_file()
    print(f"{run.name:<24} {'ok' if ok else 'INCOMPLETE'}")
PY
