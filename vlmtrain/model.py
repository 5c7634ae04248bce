"""Loading the base VLM and its processor, and the LoRA target regex of its language model.

Why a regex anchored at the language model: bare leaf names (`q_proj`) would also hit the vision
tower's attention in most VLMs. The language model's module path is found from the model itself
(`get_decoder()`), not from a per-family list of names. Adapters themselves are applied by
`vlmtrain.tuning` (per component, one peft adapter).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from vlmdata.validation import ConfigError, Problem, did_you_mean
from vlmtrain.config import ALL_LINEAR, ModelSection

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
