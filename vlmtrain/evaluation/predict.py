"""Loading a finished run (base model + LoRA adapter) and answering one image + prompt.

Why from the run folder alone: `config.yaml` names the base model and the folder holds the adapter and
processor, so a run can be tried without the training config or the dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vlmtrain.config.train import ModelSection
from vlmtrain.config.tuning import QuantSection
from vlmtrain.data.prompting import family_of_model, inference_autocast, prompt_inputs
from vlmtrain.models.build import quantization_config
from vlmtrain.models.load import load_base
from vlmtrain.models.tuning import quiet_peft
from vlmtrain.models.weights import load_trained, read_chain, replay


@dataclass(frozen=True)
class Prediction:
    """The decoded answer and the generated token ids (prompt excluded)."""

    text: str
    token_ids: list[int]


def load_run(*, run_dir: Path, device: str = "auto") -> tuple[Any, Any]:
    """(base + earlier stages + trained components + the run's adapter, processor), in eval mode.

    `device`: "auto" puts the model on the GPU when there is one (a 4-bit model is placed there by
    bitsandbytes as it loads), else the CPU; or name one ("cpu", "cuda", "cuda:1"). Why: `from_pretrained`
    leaves the model on the CPU, where evaluation on a GPU machine would be needlessly slow. The model is
    loaded as training built it (`vlmtrain.models.build.quantization_config`) and its weights read back as
    `vlmtrain.models.weights.save_weights` wrote them.
    """
    from peft import PeftModel
    from transformers import AutoProcessor

    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir} is not a vlmtrain run folder (no config.yaml)")
    raw = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8"))
    section = ModelSection.model_validate(raw["model"], context={"base_dir": run_dir})
    quant = QuantSection.model_validate(raw.get("quant") or {})
    quantization = quantization_config(model=section, method=str(raw.get("method")), quant=quant)
    base, _ = load_base(model=section, quantization=quantization, cpu=resolve_device(device) == "cpu")
    processor = AutoProcessor.from_pretrained(str(run_dir), trust_remote_code=section.trust_remote_code)
    # earlier stages (merged), then this run's fully trained components, then its adapter (kept apart)
    model = replay(model=base, chain=read_chain(run_dir))
    load_trained(model=model, folder=run_dir)
    if (run_dir / "adapter_config.json").is_file():
        with quiet_peft():
            model = PeftModel.from_pretrained(model, str(run_dir))
    if quantization is None:
        model = model.to(resolve_device(device))
    model.eval()
    return model, processor


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; anything else as given."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def generate(
    *, model: Any, processor: Any, image: Any, prompt: str, system: str | None = None, max_new_tokens: int = 32
) -> Prediction:
    """Greedy answer to `prompt` about one PIL `image`, asked as the model was trained (`vlmtrain.data.prompting`).

    `system`, when given, goes first as a system turn: a model trained on rows with a system message
    answers best when asked the same way.
    """
    import torch

    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    if system is not None:
        messages.insert(0, {"role": "system", "content": [{"type": "text", "text": system}]})
    inputs = prompt_inputs(processor=processor, family=family_of_model(model), prompts=[messages],
                           images=[[image.convert("RGB")]])
    param = next(model.parameters())
    inputs = inputs.to(device=param.device, dtype=param.dtype)  # dtype applies to floating tensors only
    with torch.no_grad(), inference_autocast(model):
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    new = out[0, inputs["input_ids"].shape[1] :].tolist()
    return Prediction(text=processor.decode(new, skip_special_tokens=True), token_ids=new)
