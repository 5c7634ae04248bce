"""Saving what a run trained beyond its adapter, and replaying earlier stages onto a fresh base model.

A run folder holds, next to the peft adapter (LoRA layers only):
    trained.safetensors   parameters of components trained fully (e.g. the projector), base-model names
    chain.json            earlier stage folders (relative paths) this run started from, in order
Why a plain safetensors and not peft `modules_to_save`: it works the same with no adapter at all
(method: full), its keys are the base model's own names, and loading it is a `copy_` per tensor.

`replay` rebuilds the weights a stage started from: for each earlier folder, load its trained
parameters, then merge its adapter into the weights (`merge_and_unload`), so the next stage's new
adapter (or `predict`) sits on exactly what the previous stage produced.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmtrain.models.tuning import quiet_peft

if TYPE_CHECKING:  # pragma: no cover
    import torch

TRAINED = "trained.safetensors"
CHAIN = "chain.json"
_PEFT_PREFIX = "base_model.model."


def trained_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Trainable non-LoRA parameters under their base-model names (peft's wrapper prefix removed)."""
    return {
        name.removeprefix(_PEFT_PREFIX): param.detach().to("cpu").contiguous().clone()
        for name, param in model.named_parameters()
        if param.requires_grad and "lora_" not in name
    }


def save_trained(*, model: torch.nn.Module, folder: Path) -> Path | None:
    """Write `trained.safetensors` when some component trained fully; returns its path (or None)."""
    from safetensors.torch import save_file

    state = trained_state(model)
    if not state:
        return None
    path = Path(folder) / TRAINED
    save_file(state, str(path))
    return path


def save_trained_state(*, model: torch.nn.Module, state: dict[str, torch.Tensor], folder: Path) -> Path | None:
    """`trained.safetensors` from a gathered full `state` (FSDP / ZeRO-3 save): the entries of the
    parameters that train fully (not LoRA) in `model`, under their base-model names."""
    from safetensors.torch import save_file

    wanted = {name.removeprefix(_PEFT_PREFIX) for name, p in model.named_parameters()
              if p.requires_grad and "lora_" not in name}
    full = {k.removeprefix(_PEFT_PREFIX): v for k, v in state.items()}
    chosen = {k: full[k].detach().to("cpu").contiguous().clone() for k in sorted(wanted) if k in full}
    if not chosen:
        return None
    path = Path(folder) / TRAINED
    save_file(chosen, str(path))
    return path


def load_trained(*, model: torch.nn.Module, folder: Path) -> list[str]:
    """Copy `folder/trained.safetensors` into the (un-wrapped) base `model`; returns the names loaded."""
    import torch
    from safetensors.torch import load_file

    path = Path(folder) / TRAINED
    if not path.is_file():
        return []
    state = load_file(str(path))
    with torch.no_grad():
        for name, tensor in state.items():
            model.get_parameter(name).copy_(tensor)
    return sorted(state)


def write_chain(*, folder: Path, chain: Sequence[Path]) -> None:
    """Record the earlier stage folders of `folder` (relative to it, so the run folder can move)."""
    relative = [os.path.relpath(Path(c).resolve(), Path(folder).resolve()) for c in chain]
    (Path(folder) / CHAIN).write_text(json.dumps(relative, indent=2) + "\n", encoding="utf-8")


def read_chain(folder: Path) -> list[Path]:
    """The earlier stage folders recorded in `folder/chain.json` (none when there is no file)."""
    path = Path(folder) / CHAIN
    if not path.is_file():
        return []
    return [(Path(folder) / p).resolve() for p in json.loads(path.read_text(encoding="utf-8"))]


def replay(*, model: Any, chain: Sequence[Path]) -> Any:
    """`model` with each earlier stage's trained parameters loaded and its adapter merged, in order."""
    from peft import PeftModel

    for folder in chain:
        load_trained(model=model, folder=folder)
        if (Path(folder) / "adapter_config.json").is_file():
            with quiet_peft():
                model = PeftModel.from_pretrained(model, str(folder)).merge_and_unload()
    return model


def save_weights(*, model: Any, folder: Path) -> None:
    """What a run folder holds of the model: the LoRA adapter (peft format), and `trained.safetensors` for
    fully trained components; `vlmtrain.evaluation.predict.load_run` reads both back."""
    if hasattr(model, "peft_config"):
        model.save_pretrained(str(folder))
    save_trained(model=model, folder=folder)
