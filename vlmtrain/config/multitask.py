"""The `multitask:` and `continual:` sections of a training config. Pure data: nothing here imports torch.

```yaml
multitask:
  sampling: {temperature: 2.0, weights: {}, caps: {}, num_samples: null, homogeneous_batches: false,
             group_by: task}                     # task | source_task (several datasets sharing task names)
  loss: {weighting: uncertainty, weights: {}, reduction: token, clamp: [-4, 4], lr: null}
continual:
  sequence:                                      # trained one after another, in this order
    - {name: colour, tasks: [color]}             # rows of data.path whose `task` is listed
    - {name: medical, data: ../out/medical}      # or another vlmdata output (its `split`, `eval_split`)
  init_from: null                                # runs/PREV: start from that run's LoRA adapter
  strategy: [replay, lwf]                        # naive | replay | ewc | lwf, or a list of them
  replay: {mode: reservoir, size: 200}           # or {mode: stratified, ratio: 0.1}
  ewc: {lambda: 100.0, gamma: 1.0, num_samples: 200}
  lwf: {alpha: 1.0, temperature: 2.0, teacher: base}
  eval: {split: validation, limit: 100, max_new_tokens: 8, batch_size: 16, metric: vqa_accuracy}
```

Why the loss is a mean over the tasks present: the step size then does not grow with the number of
tasks in a batch, and `static` weights read as relative importances (default 1 each).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    ValidationInfo,
    field_validator,
    model_validator,
)

from vlmtrain.config.paths import dataset_folder

StrategyName = Literal["naive", "replay", "ewc", "lwf"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no setting means inf or NaN


class SamplingSection(_Section):
    """The TaskSampler (`vlmtrain.data.sampler`): p_task ∝ n_task^(1/temperature), re-drawn every epoch."""

    temperature: PositiveFloat = 1.0
    weights: dict[str, PositiveFloat] = {}  # replace the temperature probabilities (normalised)
    caps: dict[str, PositiveInt] = {}  # rows per task counted at most this many before the temperature
    num_samples: PositiveInt | None = None  # rows per epoch (default: the dataset's length)
    homogeneous_batches: bool = False  # every batch from one task
    group_by: Literal["task", "source_task"] = "task"


class LossSection(_Section):
    """How per-task losses combine: `equal` mean, `static` weights, or learned `uncertainty` (Kendall et al.)."""

    weighting: Literal["equal", "static", "uncertainty"] = "equal"
    weights: dict[str, NonNegativeFloat] = {}  # static only; tasks not named weigh 1.0
    reduction: Literal["token", "sample"] = "token"  # token mean, or mean of each row's token mean
    clamp: tuple[float, float] = (-4.0, 4.0)  # uncertainty: bounds of s_t = log σ_t²
    lr: PositiveFloat | None = None  # uncertainty: learning rate of s_t (default: train.lr)

    @model_validator(mode="after")
    def _consistent(self) -> LossSection:
        if self.weights and self.weighting != "static":
            raise ValueError(f"multitask.loss.weights is used only with weighting: static (it is {self.weighting})")
        low, high = self.clamp
        if not low < 0 < high:
            raise ValueError(f"multitask.loss.clamp must be [low, high] with low < 0 < high, got {list(self.clamp)}")
        return self


class MultitaskSection(_Section):
    sampling: SamplingSection = SamplingSection()
    loss: LossSection = LossSection()


class ContinualStage(_Section):
    """One step of the sequence: some tasks of `data.path`, or a whole other dataset (`data`)."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    tasks: list[str] | None = None
    data: Path | None = None
    split: str = "train"
    eval_split: str = "validation"
    train: bool = True  # false: only evaluated (e.g. the data an `init_from` run was trained on)

    @field_validator("data")
    @classmethod
    def _folder(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else dataset_folder(value, info)

    @model_validator(mode="after")
    def _tasks_or_data(self) -> ContinualStage:
        if (self.tasks is None) == (self.data is None):
            raise ValueError(f"stage '{self.name}': set either tasks (of data.path) or data (a dataset folder)")
        if self.tasks is not None and not self.tasks:
            raise ValueError(f"stage '{self.name}': tasks is empty")
        return self


class ReplaySection(_Section):
    mode: Literal["reservoir", "stratified"] = "reservoir"
    size: int | None = Field(default=None, ge=0)
    ratio: float | None = Field(default=None, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _one(self) -> ReplaySection:
        if self.size is None and self.ratio is None:
            self.size = 200
        if self.size is not None and self.ratio is not None:
            raise ValueError("give one of replay.size and replay.ratio")
        if self.mode == "reservoir" and self.ratio is not None:
            raise ValueError("replay.ratio needs mode: stratified (a reservoir keeps a fixed size)")
        return self


class EwcSection(_Section):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    lambda_: NonNegativeFloat = Field(default=100.0, alias="lambda")
    gamma: float = Field(default=1.0, ge=0.0, le=1.0)
    num_samples: PositiveInt = 200


class LwfSection(_Section):
    alpha: NonNegativeFloat = 1.0
    temperature: PositiveFloat = 2.0
    teacher: Literal["base", "snapshot"] = "base"


class ContinualEvalSection(_Section):
    """Scoring after each stage: greedy answers on the first `limit` rows of each seen stage's eval split."""

    split: str = "validation"  # of data.path, for `tasks` stages
    limit: PositiveInt | None = 100
    max_new_tokens: PositiveInt = 8
    batch_size: PositiveInt = 16
    metric: Literal["vqa_accuracy", "exact_match"] = "vqa_accuracy"


class ContinualSection(_Section):
    sequence: list[ContinualStage] = Field(min_length=1)
    init_from: Path | None = None
    strategy: StrategyName | list[StrategyName] = "naive"
    replay: ReplaySection = ReplaySection()
    ewc: EwcSection = EwcSection()
    lwf: LwfSection = LwfSection()
    eval: ContinualEvalSection = ContinualEvalSection()

    @field_validator("init_from")
    @classmethod
    def _run_folder(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is None:
            return None
        base = (info.context or {}).get("base_dir")
        value = value.expanduser()
        value = value if value.is_absolute() or base is None else (Path(base) / value).resolve()
        if not (value / "adapter_config.json").is_file():
            raise ValueError(f"not a run folder with a LoRA adapter (no adapter_config.json): {value}")
        return value

    @field_validator("sequence")
    @classmethod
    def _unique(cls, value: list[ContinualStage]) -> list[ContinualStage]:
        names = [s.name for s in value]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"stage names must be unique; repeated: {dup}")
        return value

    @property
    def strategy_names(self) -> list[str]:
        """Every strategy named, in order (`vlmtrain.continual.registry` builds them)."""
        return [self.strategy] if isinstance(self.strategy, str) else list(self.strategy)

    @property
    def strategies(self) -> list[str]:
        """The strategies beyond plain fine-tuning (`naive` left out): what continual.json records."""
        return [n for n in self.strategy_names if n != "naive"]
