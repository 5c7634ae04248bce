"""What trains, and how: `method`, per-component `components`, and the QLoRA `quant` section.

```yaml
method: lora                      # lora | qlora | full
lora: {r: 8, alpha: 16}           # LoRA defaults for every component that does not set its own
components:                       # components not listed stay frozen
  projector: {train: full, lr: 1.0e-3}
  llm: {train: lora, r: 16, targets: [q_proj, v_proj], lr: 2.0e-4}
  vision: {train: lora, r: 4, lr: 1.0e-6}
quant: {bits: 4, quant_type: nf4, double_quant: true, compute_dtype: float32, upcast: false}   # method: qlora only
```

Why defaults this way: a config without `components:` keeps its old meaning (LoRA on the LLM with the
`lora:` section), and one that writes `components:` says in full what trains. `train` defaults to
`lora` (method lora/qlora) or `full` (method full); `r`, `alpha`, `dropout`, `targets` default to the
`lora:` section and `lr` to `train.lr`. Pure data: nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, field_validator

from vlmdata.config.errors import did_you_mean

ALL_LINEAR = "all-linear"
Method = Literal["lora", "qlora", "full"]
Mode = Literal["frozen", "lora", "full"]
COMPONENT_NAMES: tuple[str, ...] = ("vision", "projector", "llm", "cross_attention")


def check_targets(value: str | list[str]) -> str | list[str]:
    """'all-linear' or a non-empty list of module leaf names (q_proj, ...)."""
    if isinstance(value, str):
        if value != ALL_LINEAR:
            raise ValueError(
                f"'{value}' is neither '{ALL_LINEAR}' nor a list of module names{did_you_mean(value, [ALL_LINEAR])}"
            )
        return value
    if not value:
        raise ValueError(f"empty list; name modules such as [q_proj, v_proj], or write '{ALL_LINEAR}'")
    bad = [t for t in value if not t.replace("_", "").replace(".", "").isalnum()]
    if bad:
        raise ValueError(f"not module names: {', '.join(map(repr, bad))}")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no setting means inf or NaN


class ComponentSection(_Section):
    """One component (vision tower, projector or language model): how it trains and at what lr."""

    train: Mode | None = None
    r: PositiveInt | None = None
    alpha: PositiveFloat | None = None
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0)
    targets: str | list[str] | None = None
    lr: PositiveFloat | None = None

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: str | list[str] | None) -> str | list[str] | None:
        return None if value is None else check_targets(value)


class ComponentsSection(_Section):
    """The three components; one not written here stays frozen."""

    vision: ComponentSection | None = None
    projector: ComponentSection | None = None
    llm: ComponentSection | None = None
    # Mllama (Llama 3.2 Vision) only: the gated cross-attention blocks inside the LLM (seed guideline r=16-32)
    cross_attention: ComponentSection | None = None


class QuantSection(_Section):
    """bitsandbytes quantisation of the language model's linear layers (method: qlora)."""

    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # Cast every frozen weight left unquantised (norms, embeddings, LM head, vision tower) to fp32, as peft's
    # prepare_model_for_kbit_training does. Off: those weights stay in model.dtype and the activations with
    # them; off by default because the upcast costs memory (benchmarks/gpu_check.py measures how much:
    # QLoRA's peak against bf16 LoRA's, with and without). Under bf16/fp16 autocast the weights
    # that train are fp32 either way; without autocast (train.precision fp32) all stays in model.dtype.
    upcast: bool = False


@dataclass(frozen=True, kw_only=True)
class Component:
    """A component's resolved plan: every default filled in."""

    train: Mode
    r: int
    alpha: float
    dropout: float
    targets: str | list[str]
    lr: float


def resolve_components(
    *, components: ComponentsSection | None, lora: Any, method: Method, lr: float
) -> dict[str, Component]:
    """{'vision': Component, 'projector': ..., 'llm': ...} with defaults from `lora` (a LoraSection) and `lr`."""
    default_mode: Mode = "full" if method == "full" else "lora"
    written = components if components is not None else ComponentsSection(llm=ComponentSection())
    plan: dict[str, Component] = {}
    for name in COMPONENT_NAMES:
        section = getattr(written, name) or ComponentSection(train="frozen")
        plan[name] = Component(
            train=section.train or default_mode,
            r=section.r or lora.r,
            alpha=section.alpha or lora.alpha,
            dropout=lora.dropout if section.dropout is None else section.dropout,
            targets=section.targets or lora.targets,
            lr=section.lr or lr,
        )
    return plan


def plan_problems(*, plan: dict[str, Component], method: Method, where: str) -> list[tuple[str, str]]:
    """(YAML path, message) for plans that cannot run: nothing trains, LoRA without adapters, ..."""
    problems: list[tuple[str, str]] = []
    if all(c.train == "frozen" for c in plan.values()):
        problems.append((where, "nothing trains: every component is frozen"))
    for name, component in plan.items():
        if method == "full" and component.train == "lora":
            problems.append((f"{where}.{name}.train", "method: full trains without adapters; use full or frozen"))
        if method == "qlora" and name in ("llm", "cross_attention") and component.train == "full":
            problems.append((f"{where}.{name}.train", f"method: qlora quantises the LLM (and its {name}), which "
                                                      "cannot train fully; "
                                                      "use lora, or method: full"))
    if method == "qlora" and not any(c.train == "lora" for c in plan.values()):
        # transformers refuses to train a quantised model that carries no adapter, whatever else trains
        problems.append((where, "method: qlora needs a LoRA adapter on some component (e.g. llm: {train: lora}); "
                                "to train only the projector or vision tower, use method: lora"))
    return problems
