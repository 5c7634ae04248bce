"""Putting a component plan on a model: freeze, LoRA (per-component r/alpha/dropout/targets), full training.

One adapter, not one per component. peft's `rank_pattern`/`alpha_pattern` give each component its own
r and alpha inside ONE `LoraConfig`, so a run saves one `adapter_model.safetensors`, reloads with a
plain `PeftModel.from_pretrained`, merges with one `merge_and_unload()`, and every LoRA layer is
active in the same forward (separate adapters would need `set_adapter([...])` juggling on load, merge
and generate). peft has no dropout pattern, so each component's dropout is set on its layers after
creation (dropout is not saved; it only matters while training).

Targets are exact module paths: each component's Linear layers are listed by walking the model and
asking `vlmtrain.models.families` which component a module belongs to; the target regex and the pattern keys
are those escaped paths. So `q_proj` in the vision tower and in the LLM never get each other's r, and
a projector nested in the vision module (Qwen2-VL) stays the projector.
Fully trained components are plain unfrozen base parameters; `vlmtrain.models.weights` saves them apart.
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from vlmdata.config.errors import ConfigError, Problem, did_you_mean
from vlmtrain.config.tuning import ALL_LINEAR, Component
from vlmtrain.models.families import Family

if TYPE_CHECKING:  # pragma: no cover
    import torch


def linear_modules(*, model: torch.nn.Module, family: Family, component: str) -> list[str]:
    """Full names of the nn.Linear layers (quantised ones included) of `component`, LM head excluded."""
    import torch

    head = model.get_output_embeddings()
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not head and family.find_component(name) == component
    ]


def lora_modules(*, model: torch.nn.Module, family: Family, component: str, targets: str | list[str], where: str) -> list[str]:
    """The modules of `component` that get LoRA; unknown leaf names raise ConfigError at `where`."""
    names = linear_modules(model=model, family=family, component=component)
    if targets == ALL_LINEAR:
        return names
    leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
    unknown = [t for t in targets if t not in leaves]
    if unknown:
        raise ConfigError(
            [Problem(where, f"no linear layer '{t}' in the {component}{did_you_mean(t, leaves)}") for t in unknown]
            + [Problem(where, f"linear layers of the {component}: {', '.join(leaves)}")],
            what="LoRA targets",
        )
    return [n for n in names if n.rsplit(".", 1)[-1] in targets]


def _alternation(names: list[str]) -> str:
    return "(?:" + "|".join(map(re.escape, names)) + ")"


@contextlib.contextmanager
def quiet_peft() -> Iterator[None]:
    """Silence the one FutureWarning peft's wrappers trigger on every run.

    Why: peft (0.21) reads `model.is_gradient_checkpointing`, which transformers 5 deprecates with a
    FutureWarning printed at every `vlmtrain run`, `eval` and `predict`; the user can do nothing about
    it. Only that message is filtered, only around peft's wrapping.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def apply_plan(
    *,
    model: torch.nn.Module,
    family: Family,
    plan: dict[str, Component],
    seed: int,
    gradient_checkpointing: bool = False,
    where: str = "components",
) -> Any:
    """Freeze everything, add one LoRA adapter (seeded) where `plan` says lora, unfreeze `full` components.

    Returns the peft model when some component uses LoRA, else `model` itself.
    """
    import torch

    family.check_coverage(n for n, _ in model.named_parameters())  # every parameter has a component
    absent = [n for n, c in plan.items() if c.train != "frozen" and not family.prefixes(n)]
    if absent:
        raise ConfigError([Problem(f"{where}.{n}", f"family '{family.model_type}' has no {n} component; "
                                   f"remove it (components of this family: "
                                   f"{', '.join(c for c in plan if family.prefixes(c))})") for n in absent],
                          what="components")
    model.requires_grad_(False)
    if gradient_checkpointing:
        model.enable_input_require_grads()  # so checkpointed blocks see inputs that require grad
    chosen = {
        name: lora_modules(model=model, family=family, component=name, targets=c.targets, where=f"{where}.{name}.targets")
        for name, c in plan.items()
        if c.train == "lora"
    }
    if chosen:
        from peft import LoraConfig, get_peft_model

        config = LoraConfig(
            r=next(iter(plan[n].r for n in chosen)),
            lora_alpha=next(iter(plan[n].alpha for n in chosen)),
            lora_dropout=0.0,
            target_modules=_alternation([m for names in chosen.values() for m in names]),
            rank_pattern={_alternation(names): plan[n].r for n, names in chosen.items()},
            alpha_pattern={_alternation(names): plan[n].alpha for n, names in chosen.items()},
            task_type="CAUSAL_LM",
        )
        torch.manual_seed(seed)
        with quiet_peft():
            model = get_peft_model(model, config)
        _set_dropout(model=model, family=family, plan=plan)
    for name, param in model.named_parameters():
        if "lora_" not in name and plan[family.component_of(name)].train == "full":
            param.requires_grad_(True)
    return model


def _set_dropout(*, model: torch.nn.Module, family: Family, plan: dict[str, Component]) -> None:
    import torch

    for name, module in model.named_modules():
        dropouts = getattr(module, "lora_dropout", None)
        if isinstance(dropouts, torch.nn.ModuleDict):
            p = plan[family.component_of(name)].dropout if family.find_component(name) else 0.0
            for key in dropouts:
                dropouts[key] = torch.nn.Dropout(p) if p > 0 else torch.nn.Identity()
