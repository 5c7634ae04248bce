"""Optimizer parameter groups per component, and the table `vlmtrain run` prints before training.

Why groups: the parts of a VLM want very different learning rates (a fresh projector ~1e-3, LoRA on
the LLM ~2e-4, a fully tuned LLM ~2e-5, a tuned vision tower ~1e-6). Each component gets two groups:
weights with `weight_decay`, and norms/biases (any parameter with fewer than 2 dims, or a `norm` in
its name) with none, as decay on a gain or an offset only shrinks it toward a wrong value. Frozen
parameters are in no group. The groups keep `component` as a key, so the scheduler (which scales
every group's own initial lr) and the logs keep them apart.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vlmtrain.config.tuning import Component
from vlmtrain.models.families import COMPONENTS, Family

if TYPE_CHECKING:  # pragma: no cover
    import torch


def no_decay(name: str, param: torch.Tensor) -> bool:
    """Norm gains and biases (and any other vector) are not decayed."""
    return param.ndim < 2 or "norm" in name.lower() or name.endswith(".bias")


def param_groups(
    *, model: torch.nn.Module, family: Family, plan: dict[str, Component], weight_decay: float, default_lr: float
) -> list[dict[str, Any]]:
    """[{params, lr, weight_decay, component, names}] for every trainable parameter, empty groups dropped.

    Every parameter has a component (`Family.component_of` raises for one that has none); `default_lr`
    serves a component the plan does not name.
    """
    groups: dict[tuple[str, bool], dict[str, Any]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        component = family.component_of(name)
        skip = no_decay(name, param)
        group = groups.setdefault(
            (component, skip),
            {
                "params": [],
                "names": [],
                "lr": plan[component].lr if component in plan else default_lr,
                "weight_decay": 0.0 if skip else weight_decay,
                "component": component,
            },
        )
        group["params"].append(param)
        group["names"].append(name)
    return list(groups.values())


def component_table(*, model: torch.nn.Module, family: Family, plan: dict[str, Component]) -> str:
    """Parameters, trainable parameters, how each component trains and its lr, as a plain-text table."""
    counts = {c: [0, 0] for c in COMPONENTS}
    for name, param in model.named_parameters():
        row = counts[family.component_of(name)]
        n = param.numel() * (2 if param.dtype == _uint8() else 1)  # 4-bit packs two weights per byte
        row[0] += n
        row[1] += n if param.requires_grad else 0
    lines = [f"{'component':<10}  {'params':>12}  {'trainable':>12}  {'%':>7}  {'train':<12}  {'lr':>8}"]
    for name, (n, t) in counts.items():
        if name == "cross_attention" and n == 0:  # only Mllama has one
            continue
        component = plan.get(name)
        how = "-" if component is None else component.train
        if component is not None and component.train == "lora":
            how = f"lora r={component.r}"
        lr = f"{component.lr:.1e}" if component is not None and t else "-"
        lines.append(f"{name:<10}  {n:>12,}  {t:>12,}  {100 * t / max(n, 1):>6.2f}%  {how:<12}  {lr:>8}")
    total = sum(r[0] for r in counts.values())
    trainable = sum(r[1] for r in counts.values())
    lines.append(f"{'total':<10}  {total:>12,}  {trainable:>12,}  {100 * trainable / max(total, 1):>6.2f}%")
    return "\n".join(lines)


def _uint8() -> Any:
    import torch

    return torch.uint8
