"""Loading the base VLM and its processor, and the LoRA target regex of its language model.

Why a regex anchored at the language model: bare leaf names (`q_proj`) would also hit the vision
tower's attention in most VLMs. The language model's module path is found from the model itself
(`get_decoder()`), not from a per-family list of names. Adapters themselves are applied by
`vlmtrain.models.tuning` (per component, one peft adapter).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vlmdata.config.errors import ConfigError, Problem
from vlmtrain.config.processor import apply
from vlmtrain.config.train import ModelSection
from vlmtrain.data.chat import shipped_template, shipped_templates
from vlmtrain.models.families import family_of

if TYPE_CHECKING:  # pragma: no cover
    import torch

def resolve_dtype(*, dtype: str, cpu: bool = False) -> str:
    """`model.dtype` for this machine: auto = bfloat16 on a GPU that supports it, float16 on another GPU,
    float32 on the CPU (or when the run is told to use the CPU)."""
    if dtype != "auto":
        return dtype
    import torch

    if cpu or not torch.cuda.is_available():
        return "float32"
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def _local_device() -> dict[str, Any]:
    """Under torchrun/accelerate with GPUs, load (and quantise) onto this rank's GPU (`LOCAL_RANK`), not GPU 0."""
    import os

    import torch

    if "LOCAL_RANK" in os.environ and torch.cuda.is_available():
        return {"device_map": {"": int(os.environ["LOCAL_RANK"])}}
    return {}


def load_base(*, model: ModelSection, quantization: Any = None, cpu: bool = False) -> tuple[torch.nn.Module, Any]:
    """(model, processor) from `model.path`; remote code runs only when the config allows it.

    `quantization` is a transformers `BitsAndBytesConfig` (see `vlmtrain.models.quant`) or None. Under torchrun
    each rank loads onto its own GPU. A hub id that cannot be reached is a one-paragraph ConfigError.
    """
    import torch
    from transformers import AutoModelForImageTextToText

    processor = load_processor(model=model)
    with hub_errors(model=model):
        network = AutoModelForImageTextToText.from_pretrained(
            str(model.path),
            dtype=getattr(torch, resolve_dtype(dtype=model.dtype, cpu=cpu)),
            trust_remote_code=model.trust_remote_code,
            quantization_config=quantization,
            attn_implementation=model.attn_implementation,
            **(_local_device() if quantization is not None else {}),
        )
    return network, processor


def load_processor(*, model: ModelSection, path: str | None = None) -> Any:
    """The processor of `model` (or of the folder `path`, e.g. a run folder), with `model.processor`
    settings applied and the chat template `model.chat_template` / `model.thinking` ask for.

    Templates: `model.chat_template` (a shipped name or a file) replaces the checkpoint's; a thinking
    family (Qwen3.5) otherwise gets the shipped `<family>-nothink` (thinking: off) or `<family>-think`
    (keep), whose every turn renders the same way, so multi-turn answers are supervised exactly.
    """
    from pathlib import Path

    from transformers import AutoProcessor

    with hub_errors(model=model):
        processor = AutoProcessor.from_pretrained(path or str(model.path), trust_remote_code=model.trust_remote_code)
    family = family_of(model_type(model=model))
    apply(family=family, settings=model.processor, processor=processor)
    template = model.chat_template
    if template is None and family.thinking:
        template = f"{family.model_type}-{'nothink' if model.thinking == 'off' else 'think'}"
    if template is not None:
        text = shipped_template(template) if template in shipped_templates() else Path(template).read_text("utf-8")
        processor.chat_template = text
    return processor


def read_model_config(*, model: ModelSection) -> dict[str, Any]:
    """The model's config.json as a dict, without transformers (a local folder, or the hub file alone)."""
    import json
    from pathlib import Path

    local = Path(str(model.path))
    if local.is_dir():
        return json.loads((local / "config.json").read_text(encoding="utf-8"))
    with hub_errors(model=model):
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(str(model.path), "config.json")).read_text(encoding="utf-8"))


def model_type(*, model: ModelSection) -> str:
    """The `config.model_type` of the model (reads config.json only), e.g. 'llava', 'qwen2_vl'."""
    return str(read_model_config(model=model).get("model_type"))


class hub_errors:  # noqa: N801 - used as a context manager, reads like one
    """Turn a hub download failure (offline, a typo, a gated repo) into one ConfigError paragraph at `model.path`.

    Why: transformers answers an unreachable id with minutes of retries and a 70-line traceback; what the
    user needs is the model, the cause and the fix.
    """

    def __init__(self, *, model: ModelSection) -> None:
        self.model = model

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, err: BaseException | None, tb: Any) -> bool:
        if err is None or isinstance(err, ConfigError):
            return False
        from pathlib import Path

        if Path(str(self.model.path)).is_dir() or not isinstance(err, OSError):
            return False
        raise ConfigError([Problem("model.path", hub_message(model=str(self.model.path), err=err))],
                          what="model") from None


def hub_message(*, model: str, err: BaseException) -> str:
    """One paragraph: which model, why it could not be fetched, what to do."""
    import os

    text = str(err).lower()
    name = type(err).__name__
    if "gated" in text or name == "GatedRepoError":
        cause = "the repository is gated: accept its licence on huggingface.co and log in (`hf auth login`)"
    elif "repository not found" in text or name == "RepositoryNotFoundError" or "is not a valid model identifier" in text:
        cause = "no such repository on the hub (a typo in the id, or a private repo without a token)"
    elif os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "True") or "offline" in text or name == "LocalEntryNotFoundError":
        cause = "the hub is unreachable or HF_HUB_OFFLINE is set, and the model is not in the local cache"
    else:
        cause = f"it could not be fetched ({name}: {str(err).splitlines()[0][:200] if str(err) else 'no message'})"
    return (f"model '{model}' cannot be loaded: {cause}. Fix: download it once on a machine online "
            f"(`hf download {model}`) and point model.path at the local folder, or unset HF_HUB_OFFLINE if "
            "this machine can reach huggingface.co")
