"""Loading the base VLM and its processor, and putting LoRA adapters on its language model only.

Why only the language model: the vision tower and projector are already aligned; adapting the LLM is
what teaches new answers, and a target regex that names bare leaf names (`q_proj`) would also hit
the vision tower's attention in most VLMs. So targets are turned into a regex anchored at the
language model's module path, found from the model itself (`get_decoder()`), not from a per-family
list of names.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from vlmdata.validation import ConfigError, Problem, did_you_mean
from vlmtrain.config import ALL_LINEAR, LoraSection, ModelSection

if TYPE_CHECKING:  # pragma: no cover
    import torch

def load_base(*, model: ModelSection, quantization: Any = None) -> tuple[torch.nn.Module, Any]:
    """(model, processor) from `model.path`; remote code runs only when the config allows it.

    `quantization` is a transformers `BitsAndBytesConfig` (see `vlmtrain.quant`) or None.
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(str(model.path), trust_remote_code=model.trust_remote_code)
    network = AutoModelForImageTextToText.from_pretrained(
        str(model.path),
        dtype=getattr(torch, model.dtype),
        trust_remote_code=model.trust_remote_code,
        quantization_config=quantization,
    )
    return network, processor


def model_type(*, model: ModelSection) -> str:
    """The `config.model_type` of the model folder (reads config.json only), e.g. 'llava', 'qwen2_vl'."""
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(model.path), trust_remote_code=model.trust_remote_code).model_type


def language_model_prefix(model: torch.nn.Module) -> str:
    """The module path of the language model inside a VLM (e.g. 'model.language_model' for LLaVA)."""
    decoder = model.get_decoder()
    for name, module in model.named_modules():
        if module is decoder and name:
            return name
    raise ValueError(f"cannot locate the language model inside {type(model).__name__}")


def lora_target_regex(*, model: torch.nn.Module, targets: str | list[str]) -> str:
    """A regex (peft full-matches it against module names) selecting `targets` inside the LLM only.

    `targets` is 'all-linear' (every nn.Linear of the LLM; the LM head sits outside it) or leaf names.
    Unknown leaf names raise ConfigError at `lora.targets`, listing the LLM's linear layers.
    """
    import torch

    prefix = language_model_prefix(model)
    decoder = model.get_submodule(prefix)
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in decoder.named_modules() if isinstance(m, torch.nn.Linear) and n})
    if targets == ALL_LINEAR:
        leaves = linear
    else:
        names = {n.rsplit(".", 1)[-1] for n, _ in decoder.named_modules() if n}
        unknown = [t for t in targets if t not in names]
        if unknown:
            raise ConfigError(
                [
                    Problem("lora.targets", f"no module '{t}' in the language model{did_you_mean(t, linear)}")
                    for t in unknown
                ]
                + [Problem("lora.targets", f"linear layers of the language model: {', '.join(linear)}")],
                what="LoRA targets",
            )
        leaves = list(targets)
    return rf"{re.escape(prefix)}\.(?:.*\.)?(?:{'|'.join(map(re.escape, leaves))})"


def apply_lora(*, model: torch.nn.Module, lora: LoraSection, seed: int, gradient_checkpointing: bool = False) -> Any:
    """Freeze the base model and add LoRA adapters (initialised from `seed`) to its language model."""
    import torch
    from peft import LoraConfig, get_peft_model

    if gradient_checkpointing:
        model.enable_input_require_grads()  # so checkpointed blocks see inputs that require grad
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora_target_regex(model=model, targets=lora.targets),
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(seed)
    return get_peft_model(model, config)


def _group(name: str) -> str:
    parts = name.removeprefix("base_model.model.").split(".")
    return ".".join(parts[:2]) if parts[0] == "model" and len(parts) > 2 else parts[0]


def parameter_table(model: torch.nn.Module) -> str:
    """A plain-text table of parameters and trainable parameters per top-level part of the model.

    Why: one glance shows that LoRA landed where intended (LLM only, vision tower frozen).
    """
    rows: OrderedDict[str, list[int]] = OrderedDict()
    for name, param in model.named_parameters():
        counts = rows.setdefault(_group(name), [0, 0])
        counts[0] += param.numel()
        counts[1] += param.numel() if param.requires_grad else 0
    total, trainable = sum(c[0] for c in rows.values()), sum(c[1] for c in rows.values())
    width = max(len(k) for k in [*rows, "total", "part"])
    lines = [f"{'part':<{width}}  {'params':>12}  {'trainable':>12}  {'%':>7}"]
    for key, (n, t) in [*rows.items(), ("total", (total, trainable))]:
        lines.append(f"{key:<{width}}  {n:>12,}  {t:>12,}  {100 * t / max(n, 1):>6.2f}%")
    return "\n".join(lines)
