#!/usr/bin/env bash
# QLoRA 4-bit vs LoRA bf16 on a ~1B-parameter random VLM: peak GPU memory and tokens/s, one table.
#   bash benchmarks/gpu_check.sh            # on a GPU machine, from anywhere; < 5 minutes on one H100
# Needs the train extra (torch with CUDA, transformers, peft, bitsandbytes). Offline: the model is random.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$PY" -c "import torch, bitsandbytes; assert torch.cuda.is_available(), 'no CUDA device'; print('torch', torch.__version__, 'bitsandbytes', bitsandbytes.__version__)"
timeout 290 "$PY" benchmarks/gpu_check.py --device cuda "$@"
