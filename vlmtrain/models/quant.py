"""QLoRA: quantise the language model with bitsandbytes, and guard against a known silent failure.

What gets quantised: only the LLM's linear layers. The vision tower and projector stay in the compute
dtype (they are small, and quantising them costs accuracy for little memory), the LM head stays too,
and so does every linear layer narrower than 64 in or out: bitsandbytes' 4-bit kernels fail on those
(on CPU, the forward breaks). The skip list is computed from the model's structure, built on the meta
device (no weights, no memory), so it is right for any family in `vlmtrain.models.families`.

The trap: with bitsandbytes 4-bit on CPU, a forward in eval mode before training repacks the weights
and LoRA then silently gets no gradients. `guard_eval_forward` makes any eval-mode forward before
training raise instead; the Trainer removes the guard when training starts (`GuardRelease`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from transformers import TrainerCallback

from vlmtrain.config.tuning import QuantSection
from vlmtrain.models.families import Family

if TYPE_CHECKING:  # pragma: no cover
    import torch

MIN_WIDTH = 64


def skip_modules(*, model_path: str, family: Family, trust_remote_code: bool) -> list[str]:
    """Module names bitsandbytes must leave alone: vision, projector, LM head, and layers narrower than 64."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    config = AutoConfig.from_pretrained(model_path, trust_remote_code=trust_remote_code)
    with torch.device("meta"):
        skeleton = AutoModelForImageTextToText.from_config(config, trust_remote_code=trust_remote_code)
    skip = [*family.vision, *family.projector, "lm_head"]
    for name, module in skeleton.named_modules():
        narrow = isinstance(module, torch.nn.Linear) and min(module.in_features, module.out_features) < MIN_WIDTH
        if narrow and family.find_component(name) == "llm":
            skip.append(name)
    return skip


def bnb_config(*, quant: QuantSection, skip: list[str], storage: str | None = None) -> Any:
    """The transformers `BitsAndBytesConfig` for `quant` (4-bit nf4/fp4 or 8-bit), skipping `skip`.

    `storage` (a dtype name) packs the 4-bit weights in that dtype instead of uint8: FSDP shards only
    floating tensors of one dtype, so QLoRA under `distributed: fsdp` stores them in the compute dtype.
    """
    import torch
    from transformers import BitsAndBytesConfig

    if quant.bits == 8:
        return BitsAndBytesConfig(load_in_8bit=True, llm_int8_skip_modules=skip)
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.quant_type,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, quant.compute_dtype),
        llm_int8_skip_modules=skip,
        **({"bnb_4bit_quant_storage": getattr(torch, storage)} if storage else {}),
    )


def upcast_floats(*, model: torch.nn.Module, only_trainable: bool) -> None:
    """Cast fp16/bf16 parameters (never the quantised ones) to fp32 in place.

    Why not peft's `prepare_model_for_kbit_training`: it casts *every* unquantised weight to fp32, so the
    norms, embeddings and LM head then run in fp32 and the activations they produce are fp32 too; on a GPU
    that makes QLoRA use more memory than bf16 LoRA (see `QuantSection.upcast`). We cast the weights that
    train (fp32 masters for the optimiser) when the run computes under autocast, and the frozen ones only
    when the config asks; without autocast a fp32 layer would receive bf16 inputs and fail.
    """
    import torch

    for param in model.parameters():
        low = param.dtype in (torch.float16, torch.bfloat16)
        quantised = type(param).__name__ in ("Params4bit", "Int8Params")
        if low and not quantised and (param.requires_grad or not only_trainable):
            param.data = param.data.to(torch.float32)


def guard_eval_forward(model: torch.nn.Module) -> Any:
    """Make an eval-mode forward of `model` raise until the returned handle is removed.

    Why: see the module docstring; the failure it prevents is silent (zero LoRA gradients, flat loss).
    """

    def refuse(module: torch.nn.Module, args: Any) -> None:
        if not module.training:
            raise RuntimeError(
                "an eval-mode forward of a quantised model before training repacks its 4-bit weights and "
                "LoRA then gets no gradients; run diagnostics without a forward, or after training"
            )

    return model.register_forward_pre_hook(refuse)


class GuardRelease(TrainerCallback):
    """Removes the eval-forward guard once training has started (the Trainer's own forwards are in train mode)."""

    def __init__(self, *, handle: Any) -> None:
        self.handle = handle

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.handle.remove()
