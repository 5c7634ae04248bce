"""The training config: one pydantic model, validated (files included) before any model loads.

Why up front: a typo found after a 5-minute model load, or after an hour of training when the
checkpoint is written, wastes the run. `load_train_config` reads the YAML with the same helpers as
vlmdata recipes (`extends:`, `${VAR}`, `--set`) and reports every problem at once, each with its
YAML path and a did-you-mean:

    2 problem(s) in training config medical-tiny.yaml:
      - lora.alpah: unknown key 'alpah'; did you mean 'alpha'?
      - train.lr: Input should be greater than 0

Relative paths resolve against the config file's folder. The default output folder is
`runs/NAME` under the current directory.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from vlmdata.config_io import load_config_dict
from vlmdata.validation import ConfigError, did_you_mean, problems_from_validation_error

ALL_LINEAR = "all-linear"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _resolve(value: Path, info: ValidationInfo) -> Path:
    """Absolute path; relative ones are read against the config file's folder (`context['base_dir']`)."""
    value = value.expanduser()
    if value.is_absolute():
        return value
    base = (info.context or {}).get("base_dir")
    return (Path(base) / value).resolve() if base is not None else value.resolve()


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class ModelSection(_Section):
    """The base model: a local folder in Hugging Face format (e.g. written by `vlmtrain tiny`), or a hub
    id such as `llava-hf/llava-1.5-7b-hf` for users online (transformers downloads and caches it)."""

    path: Path | str
    trust_remote_code: bool = False
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"

    @field_validator("path", mode="before")
    @classmethod
    def _model_folder(cls, value: Any, info: ValidationInfo) -> Path | str:
        raw = str(value)
        local = _resolve(Path(raw), info)
        if local.is_dir():
            if not (local / "config.json").is_file():
                raise ValueError(f"not a model folder (no config.json): {local}")
            return local
        if HUB_ID.fullmatch(raw) and not raw.startswith((".", "/", "~")) and not local.parent.is_dir():
            return raw  # a hub model id, not a local path
        raise ValueError(f"model folder not found: {local} (create a tiny one with `vlmtrain tiny {local}`, "
                         f"or name a hub model such as org/name)")

class DataSection(_Section):
    """A vlmdata output folder (a `DatasetDict` written with `save_to_disk`) and the split to train on."""

    path: Path
    split: str = "train"
    max_length: PositiveInt = 1024

    @field_validator("path")
    @classmethod
    def _dataset_folder(cls, value: Path, info: ValidationInfo) -> Path:
        value = _resolve(value, info)
        if not value.is_dir():
            raise ValueError(f"dataset folder not found: {value} (build it with `vlmdata build RECIPE`)")
        if not (value / "dataset_dict.json").is_file():
            raise ValueError(f"not a saved DatasetDict (no dataset_dict.json): {value}")
        return value

    @field_validator("split")
    @classmethod
    def _known_split(cls, value: str, info: ValidationInfo) -> str:
        folder = info.data.get("path")
        if folder is None:  # the path already has its own problem
            return value
        splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
        if value not in splits:
            raise ValueError(f"no split '{value}' in {folder}{did_you_mean(value, splits)} (splits: {', '.join(splits)})")
        return value


class LoraSection(_Section):
    """LoRA on the language model only; `targets` are module leaf names (q_proj, ...) or 'all-linear'."""

    r: PositiveInt = 8
    alpha: PositiveFloat = 16.0
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    targets: str | list[str] = ALL_LINEAR

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str):
            if value != ALL_LINEAR:
                raise ValueError(
                    f"'{value}' is neither '{ALL_LINEAR}' nor a list of module names"
                    f"{did_you_mean(value, [ALL_LINEAR])}"
                )
            return value
        if not value:
            raise ValueError(f"empty list; name modules such as [q_proj, v_proj], or write '{ALL_LINEAR}'")
        bad = [t for t in value if not t.replace("_", "").replace(".", "").isalnum()]
        if bad:
            raise ValueError(f"not module names: {', '.join(map(repr, bad))}")
        return value


class TrainSection(_Section):
    """Optimisation: either `steps` or `epochs` (default: 1 epoch); the batch is `batch_size * grad_accum`."""

    steps: PositiveInt | None = None
    epochs: PositiveFloat | None = None
    batch_size: PositiveInt = 1
    grad_accum: PositiveInt = 1
    lr: PositiveFloat = 2e-4
    weight_decay: NonNegativeFloat = 0.0
    warmup_steps: NonNegativeInt = 0
    scheduler: Literal["constant", "constant_with_warmup", "linear", "cosine"] = "cosine"
    max_grad_norm: PositiveFloat = 1.0
    log_every: PositiveInt = 1
    save_every: PositiveInt | None = None
    gradient_checkpointing: bool = False
    num_workers: NonNegativeInt = 0
    device: Literal["auto", "cpu"] = "auto"

    @model_validator(mode="after")
    def _steps_or_epochs(self) -> TrainSection:
        if self.steps is not None and self.epochs is not None:
            raise ValueError("set either train.steps or train.epochs, not both")
        if self.steps is None and self.epochs is None:
            self.epochs = 1.0
        return self


class OutputSection(_Section):
    """Where the run writes adapter, processor, config.yaml and log.jsonl (default: runs/NAME)."""

    dir: Path | None = None

    @field_validator("dir")
    @classmethod
    def _absolute(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        return None if value is None else _resolve(value, info)


class TrainConfig(_Section):
    """A whole fine-tuning run. Every random choice (LoRA init, data order) follows `seed`."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    seed: int = 0
    model: ModelSection
    data: DataSection
    lora: LoraSection = LoraSection()
    train: TrainSection = TrainSection()
    output: OutputSection = OutputSection()

    @model_validator(mode="after")
    def _default_output(self) -> TrainConfig:
        if self.output.dir is None:
            self.output.dir = (Path.cwd() / "runs" / self.name).resolve()
        return self

    @property
    def run_dir(self) -> Path:
        assert self.output.dir is not None  # set by the validator
        return self.output.dir


def validate_train_config(data: dict[str, Any], *, base_dir: Path, what: str = "training config") -> TrainConfig:
    """Validate an already-loaded dict; every problem is raised together as one ConfigError."""
    try:
        return TrainConfig.model_validate(data, context={"base_dir": Path(base_dir)})
    except ValidationError as err:
        raise ConfigError(problems_from_validation_error(err, model=TrainConfig, data=data), what=what) from None


def load_train_config(path: str | Path, *, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read, merge (`extends:`), expand (`${VAR}`), override (`--set`) and validate a training YAML."""
    path = Path(path)
    what = f"training config {path}"
    data, _secrets = load_config_dict(path, overrides=list(overrides), what=what)
    return validate_train_config(data, base_dir=path.resolve().parent, what=what)


def config_to_yaml(config: TrainConfig) -> str:
    """The resolved config (absolute paths, defaults filled in), as written to `runs/NAME/config.yaml`."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
