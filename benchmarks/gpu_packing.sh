#!/usr/bin/env bash
# Packed vs padded bf16 LoRA steps on a random Qwen2-VL with a ~3B language model: tokens/s and peak memory.
#   bash benchmarks/gpu_packing.sh                 # on a GPU machine; `--layers 12` if time is short
# Needs the train extra (torch with CUDA, transformers, peft); flash-attn is used when it imports.
# Paste the printed table into benchmarks/GPU_RESULTS.md under "Packing".
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__)"
"$PY" -c "import flash_attn; print('flash-attn', flash_attn.__version__)" 2>/dev/null || echo "flash-attn: not installed, SDPA"
timeout 540 "$PY" benchmarks/gpu_packing.py --device cuda "$@"
