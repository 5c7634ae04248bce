"""`distributed:` how a run launched with several processes (`torchrun`, `accelerate launch`) shares the work.

```yaml
distributed: {strategy: fsdp}      # ddp (default) | fsdp | deepspeed_zero2 | deepspeed_zero3
```

- ddp: every rank holds the whole model; each loads (and, for QLoRA, quantises) onto its own GPU
  (`LOCAL_RANK`, see `vlmtrain.models.load.load_base`).
- fsdp: parameters sharded per decoder layer (the model's `_no_split_modules`), FSDP2 where the
  installed accelerate has it; QLoRA stores its 4-bit weights in the compute dtype
  (`bnb_4bit_quant_storage`), which FSDP needs to shard them.
- deepspeed_zero2 / deepspeed_zero3: DeepSpeed ZeRO stage 2 (optimizer + gradients sharded) or 3
  (parameters too; weights gathered to 16 bit on save). Needs the `deepspeed` package.

The final save goes through the Trainer's own save (`Trainer.save_model`), which gathers sharded
weights, so the adapter and fully trained components are complete under every strategy. Pure data.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

Strategy = Literal["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"]


class DistributedSection(BaseModel):
    """The multi-process strategy; a single process ignores it."""

    model_config = ConfigDict(extra="forbid")

    strategy: Strategy = "ddp"

    @property
    def sharded(self) -> bool:
        """Whether weights are sharded across ranks (saving must gather them)."""
        return self.strategy != "ddp"


def fsdp_version() -> int:
    """2 when the installed accelerate supports FSDP2 (`fully_shard`), else 1."""
    try:
        from accelerate.utils import FullyShardedDataParallelPlugin

        return 2 if "fsdp_version" in FullyShardedDataParallelPlugin.__dataclass_fields__ else 1
    except ImportError:  # pragma: no cover - accelerate is a train dependency
        return 1


def trainer_arguments(*, section: DistributedSection | None, layer_classes: list[str]) -> dict[str, Any]:
    """The TrainingArguments keys for `section` (empty for ddp: the Trainer's default under torchrun)."""
    if section is None or section.strategy == "ddp":
        return {}
    if section.strategy == "fsdp":
        config: dict[str, Any] = {"fsdp_version": fsdp_version(), "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                                  "transformer_layer_cls_to_wrap": layer_classes, "state_dict_type": "FULL_STATE_DICT",
                                  "use_orig_params": True, "cpu_ram_efficient_loading": False}
        if fsdp_version() == 2:
            config["reshard_after_forward"] = True
        return {"fsdp": True, "fsdp_config": config}  # full_shard by default
    stage = 2 if section.strategy == "deepspeed_zero2" else 3
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True}
    if stage == 3:
        zero["stage3_gather_16bit_weights_on_model_save"] = True
    return {"deepspeed": {
        "zero_optimization": zero,
        "bf16": {"enabled": "auto"}, "fp16": {"enabled": "auto"},
        "train_micro_batch_size_per_gpu": "auto", "gradient_accumulation_steps": "auto",
        "gradient_clipping": "auto", "train_batch_size": "auto",
    }}


def strategy_problems(section: DistributedSection | None) -> list[tuple[str, str]]:
    """(YAML path, message) when the strategy's package is missing."""
    import importlib.util

    if section is not None and section.strategy.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        return [("distributed.strategy", f"{section.strategy} needs the deepspeed package (pip install deepspeed, "
                                         "on a CUDA machine); or use fsdp")]
    return []
