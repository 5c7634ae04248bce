"""`train.kernels`: fused GPU kernels for the training step, checked before any work.

Why a check of its own: Liger kernels (`liger-kernel`: fused linear cross-entropy, RMSNorm, RoPE, SwiGLU) are
Triton kernels, GPU only; on a CPU run they could only crash mid-setup. And the fused linear cross-entropy
never materialises the logits, so anything that reads the logits of a training step (per-task losses with
`multitask:`, DPO's log-probabilities) cannot run with it. `vlmtrain validate` refuses those combinations,
each with its YAML path; the run itself hands `use_liger_kernel` to the Trainer (`vlmtrain.training.trainer`), which
patches the model by its type (the PEFT base model under LoRA).
"""

from __future__ import annotations

import importlib.util
from typing import Any

KERNELS = ("none", "liger")
INSTALL = "pip install 'vlmdata[liger]'"


def kernel_problems(config: Any) -> list[tuple[str, str]]:
    """(YAML path, problem) for `train.kernels: liger` (top level or a stage's `train`) where it cannot run:
    CPU, no CUDA device, no `liger-kernel`, or a run that reads the step's logits (multitask, DPO)."""
    sections = [("train", config.train, config.dpo is not None)] + [
        (f"stages[{i}].train", stage.train, stage.method == "dpo" or stage.dpo is not None)
        for i, stage in enumerate(config.stages or [])]
    found: list[tuple[str, str]] = []
    for where, train, dpo in sections:
        if train.kernels != "liger":
            continue
        path = f"{where}.kernels"
        if train.device == "cpu":
            found.append((path, "liger kernels run on a GPU only (Triton) and train.device is cpu; "
                                "set train.kernels: none"))
        elif not _cuda_available():
            found.append((path, "liger kernels run on a GPU only (Triton) and this machine has no CUDA device; "
                                "set train.kernels: none"))
        if importlib.util.find_spec("liger_kernel") is None:
            found.append((path, f"liger-kernel is not installed ({INSTALL}); or set train.kernels: none"))
        if config.multitask is not None:
            found.append((path, "liger's fused cross-entropy returns no logits, which multitask per-task losses "
                                "need; set train.kernels: none or remove multitask"))
        if dpo:
            found.append((path, "liger's fused cross-entropy returns no logits, which DPO's log-probabilities "
                                "need; set train.kernels: none"))
    return found


def _cuda_available() -> bool:
    import torch  # only for train.kernels: liger (vlmtrain validate stays torch-free otherwise)

    return bool(torch.cuda.is_available())
