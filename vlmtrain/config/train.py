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
from dataclasses import dataclass
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
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from vlmdata.config.errors import ConfigError, Problem, did_you_mean, problems_from_validation_error
from vlmdata.config.io import load_config_dict
from vlmtrain.config.distributed import DistributedSection, strategy_problems
from vlmtrain.config.dpo import DpoSection, dpo_problems
from vlmtrain.config.finite import nonfinite_problems
from vlmtrain.config.kernels import kernel_problems
from vlmtrain.config.multitask import ContinualSection, MultitaskSection
from vlmtrain.config.paths import EvalDataInfo, dataset_folder, known_split, resolve_path
from vlmtrain.config.tuning import (
    ALL_LINEAR,
    Component,
    ComponentsSection,
    Method,
    QuantSection,
    check_targets,
    plan_problems,
    resolve_components,
)
from vlmtrain.data.chat import shipped_templates
from vlmtrain.data.packing import packing_problem
from vlmtrain.data.raw_sources import source_problems
from vlmtrain.models.families import FAMILIES


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # no setting means inf or NaN


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class ModelSection(_Section):
    """The base model: a local folder in Hugging Face format (e.g. written by `vlmtrain tiny`), or a hub
    id such as `llava-hf/llava-1.5-7b-hf` for users online (transformers downloads and caches it)."""

    path: Path | str
    trust_remote_code: bool = False
    # auto: bf16 on a GPU that supports it, fp16 on another GPU, fp32 on the CPU (vlmtrain.models.load.resolve_dtype)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"] = "sdpa"
    # a chat template replacing the checkpoint's: a shipped name (vlmtrain/chat_templates/NAME.jinja) or a file
    chat_template: str | None = None
    # thinking chat templates (Qwen3.5): off = empty think blocks, only the answer is supervised; keep = the
    # answer as written, its own <think>...</think> included
    thinking: Literal["off", "keep"] = "off"
    # processor settings, checked per family (vlmtrain.config.processor); defaults cap image tokens
    processor: dict[str, Any] = Field(default_factory=dict)

    @field_validator("thinking", mode="before")
    @classmethod
    def _yaml_off(cls, value: Any) -> Any:
        """YAML reads a bare `off` as false: take it as the 'off' the user wrote."""
        return "off" if value is False else value

    @field_validator("chat_template")
    @classmethod
    def _template(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None or value in shipped_templates():
            return value
        path = resolve_path(Path(value), info)
        if path.is_file():
            return str(path)
        raise ValueError(f"'{value}' is neither a template file nor a shipped template"
                         f"{did_you_mean(value, shipped_templates())} (shipped: {', '.join(shipped_templates())})")

    @field_validator("attn_implementation")
    @classmethod
    def _attention(cls, value: str) -> str:
        import importlib.util

        if value == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
            raise ValueError("flash_attention_2 needs the flash-attn package (pip install flash-attn, on a CUDA "
                             "machine); or use sdpa")
        return value

    @field_validator("path", mode="before")
    @classmethod
    def _model_folder(cls, value: Any, info: ValidationInfo) -> Path | str:
        if not isinstance(value, str | Path) or not str(value).strip():
            raise ValueError(f"needs a model folder or a hub id such as org/name, got {value!r}")
        raw = str(value)
        local = resolve_path(Path(raw), info)
        if local.is_dir():
            if not (local / "config.json").is_file():
                raise ValueError(f"not a model folder (no config.json): {local}")
            return local
        if HUB_ID.fullmatch(raw) and not raw.startswith((".", "/", "~")) and not local.parent.is_dir():
            return raw  # a hub model id, not a local path
        raise ValueError(f"model folder not found: {local} (create a tiny one with `vlmtrain tiny {local}`, "
                         f"or name a hub model such as org/name)")

class SourceSpec(_Section):
    """One dataset to train on. `weight` scales its row count: 2.0 = every row twice, 0.5 = a seeded half.

    With `kind` (any vlmdata source kind: sharegpt, webdataset, llava, llava_onevision, jsonl, ...),
    `path` is that source's file or folder, read through the `vlmdata` command line at the start of the
    run (`vlmtrain.data.raw_sources`; `options`: the source's other keys, e.g. image_root, fields, tags);
    without it, a built dataset.
    """

    kind: str | None = None
    path: Path
    split: str = "train"
    weight: PositiveFloat = 1.0
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("path")
    @classmethod
    def check_path(cls, value: Path, info: ValidationInfo) -> Path:
        if info.data.get("kind") is None:
            return dataset_folder(value, info)
        value = resolve_path(value, info)
        if not value.exists():
            raise ValueError(f"path not found: {value}")
        return value

    @field_validator("split")
    @classmethod
    def check_split(cls, value: str, info: ValidationInfo) -> str:
        return value if info.data.get("kind") is not None else known_split(value, info)

    _base_dir: Path | None = PrivateAttr(default=None)  # the config's folder: options' relative paths

    @model_validator(mode="after")
    def _check_source(self, info: ValidationInfo) -> SourceSpec:
        if self.kind is None:
            if self.options:
                raise ValueError("'options' are a vlmdata source's keys; set 'kind' too (e.g. kind: sharegpt)")
            return self
        self._base_dir = Path((info.context or {}).get("base_dir", ".")).resolve()
        problems = source_problems(kind=self.kind, path=self.path, options=self.options, base_dir=self._base_dir)
        if problems:
            raise ValueError("; ".join(f"{p.path if p.path in ('kind', 'path', '') else 'options.' + p.path}: "
                                       f"{p.message}" for p in problems))
        return self


class DataSection(_Section):
    """What to train on: `path` (+ `split`) for one vlmdata output, or `sources` for several, weighted.

    Each folder is a vlmdata output (a `DatasetDict` written with `save_to_disk`) or a single saved
    `Dataset` in the same row contract. Rows longer than `max_length` tokens whose cut would split an
    image, or leave no answer token, are rejected before training (see `vlmtrain.data.diagnostics`).
    """

    path: Path | None = None
    split: str = "train"
    sources: list[SourceSpec] | None = None
    max_length: PositiveInt = 1024

    check_path = field_validator("path")(dataset_folder)
    check_split = field_validator("split")(known_split)

    @model_validator(mode="after")
    def _path_or_sources(self) -> DataSection:
        if (self.path is None) == (self.sources is None):
            raise ValueError("set either data.path (one dataset) or data.sources (a list), not both or neither")
        if self.sources is not None and not self.sources:
            raise ValueError("data.sources is empty; list at least one {path, split, weight}")
        return self

    @property
    def all_sources(self) -> list[SourceSpec]:
        """The sources to read; `data.path` is shorthand for one source of weight 1."""
        if self.sources is not None:
            return list(self.sources)
        assert self.path is not None  # the validator guarantees one of the two
        return [SourceSpec.model_construct(path=self.path, split=self.split, weight=1.0)]


class LoraSection(_Section):
    """LoRA on the language model only; `targets` are module leaf names (q_proj, ...) or 'all-linear'."""

    r: PositiveInt = 8
    alpha: PositiveFloat = 16.0
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    targets: str | list[str] = ALL_LINEAR

    @field_validator("targets")
    @classmethod
    def _targets(cls, value: str | list[str]) -> str | list[str]:
        return check_targets(value)


class TrainSection(_Section):
    """Optimisation: either `steps` or `epochs` (default: 1 epoch); the batch is `batch_size * grad_accum`."""

    steps: PositiveInt | None = None
    epochs: PositiveFloat | None = None
    batch_size: PositiveInt = 1
    grad_accum: PositiveInt = 1
    lr: PositiveFloat = 2e-4
    weight_decay: NonNegativeFloat = 0.0
    warmup_steps: NonNegativeInt = 0
    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)  # used when warmup_steps is 0
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16/fp16 on a GPU that has it, else fp32
    scheduler: Literal["constant", "constant_with_warmup", "linear", "cosine"] = "cosine"
    max_grad_norm: PositiveFloat = 1.0
    log_every: PositiveInt = 1
    save_every: PositiveInt | None = None
    gradient_checkpointing: bool = False
    num_workers: NonNegativeInt = 0
    device: Literal["auto", "cpu"] = "auto"
    report_to: list[Literal["tensorboard"]] = Field(default_factory=list)  # log.jsonl + PNGs are always written
    group_by_length: bool = False  # batches of similar token length (less padding), order seeded
    packing: bool = False  # rows packed into sequences of data.max_length, no attention across rows (vlmtrain.data.packing)
    kernels: Literal["none", "liger"] = "none"  # liger: fused GPU kernels (vlmtrain.config.kernels), GPU only

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
        return None if value is None else resolve_path(value, info)


class EvalSection(_Section):
    """Generation-based evaluation during training: every `every` steps on `data` (`split`), first `limit` rows."""

    every: PositiveInt
    data: Path
    split: str = "validation"
    limit: PositiveInt | None = None
    max_new_tokens: PositiveInt = 32
    batch_size: PositiveInt = 8

    check_data = field_validator("data")(dataset_folder)

    @field_validator("split")
    @classmethod
    def _eval_split(cls, value: str, info: ValidationInfo) -> str:
        return known_split(value, EvalDataInfo(info))


class StageSection(_Section):
    """One stage of a staged run (e.g. `projector` then `sft`); it starts from the previous stage's weights.

    `data` and `components` replace the top-level ones when given; `train` keys override the top level's.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    data: DataSection | None = None
    components: ComponentsSection | None = None
    train: TrainSection = TrainSection()
    method: Literal["sft", "dpo"] = "sft"  # what this stage optimises (dpo: on preference rows, vlmtrain/training/dpo.py)
    dpo: DpoSection | None = None  # with method: dpo (default settings when left out)


@dataclass(frozen=True, kw_only=True)
class PlanAt:
    """One run's component plan; `where` is the YAML prefix of its components section, `written` that section."""

    where: str
    written: ComponentsSection | None
    plan: dict[str, Component]
    dpo: bool


class TrainConfig(_Section):
    """A whole fine-tuning run. Every random choice (LoRA init, data order) follows `seed`."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    seed: int = 0
    model: ModelSection
    data: DataSection
    lora: LoraSection = LoraSection()
    train: TrainSection = TrainSection()
    output: OutputSection = OutputSection()
    eval: EvalSection | None = None
    method: Method = "lora"
    components: ComponentsSection | None = None
    quant: QuantSection | None = None
    stages: list[StageSection] | None = None
    multitask: MultitaskSection | None = None  # task sampling + per-task loss weighting
    continual: ContinualSection | None = None  # a task sequence, trained one after another
    distributed: DistributedSection | None = None  # ddp | fsdp | deepspeed_zero2 | deepspeed_zero3 (multi-process)
    dpo: DpoSection | None = None  # preference training (vlmtrain/config/dpo.py); `method: dpo` sets it

    @model_validator(mode="before")
    @classmethod
    def _method_dpo(cls, data: Any) -> Any:
        """`method: dpo` is `method: lora` + `dpo:` (DPO is an objective; LoRA/QLoRA is how the weights train)."""
        if isinstance(data, dict) and data.get("method") == "dpo":
            data = {**data, "method": "lora", "dpo": data.get("dpo") or {}}
        return data

    @model_validator(mode="before")
    @classmethod
    def _stage_train_inherits(cls, data: Any) -> Any:
        """A stage's `train:` keys override the top-level `train:` (so a stage writes only what differs)."""
        if isinstance(data, dict) and isinstance(data.get("stages"), list):
            top = data.get("train") if isinstance(data.get("train"), dict) else {}
            data = {**data, "stages": [
                {**s, "train": {**top, **(s.get("train") or {})}} if isinstance(s, dict) else s for s in data["stages"]
            ]}
        return data

    def plan(self, stage: StageSection | None = None) -> dict[str, Component]:
        """Per component (vision, projector, llm): train mode, LoRA r/alpha/dropout/targets and lr."""
        components = self.components if stage is None or stage.components is None else stage.components
        lr = self.train.lr if stage is None else stage.train.lr
        return resolve_components(components=components, lora=self.lora, method=self.method, lr=lr)

    def plans(self) -> list[PlanAt]:
        """The plan of every run this config makes (each stage, or the run itself), with its YAML prefix:
        the one enumeration that validation and the LoRA target check (`vlmtrain.models.preflight`) read."""
        if not self.stages:
            return [PlanAt(where="components", written=self.components, plan=self.plan(), dpo=self.dpo is not None)]
        return [PlanAt(where=f"stages[{i}].components",
                       written=s.components if s.components is not None else self.components, plan=self.plan(s),
                       dpo=s.method == "dpo" or s.dpo is not None)
                for i, s in enumerate(self.stages)]

    @model_validator(mode="after")
    def _default_output(self) -> TrainConfig:
        if self.output.dir is None:
            self.output.dir = (Path.cwd() / "runs" / self.name).resolve()
        return self

    @property
    def run_dir(self) -> Path:
        assert self.output.dir is not None  # set by the validator
        return self.output.dir


def _packing_problems(config: TrainConfig) -> list[tuple[str, str]]:
    """`train.packing` next to settings it cannot honour (the family check needs the model: vlmtrain.recipes.finetune)."""
    found = []
    trains = [("train", config.train), *((f"stages[{i}].train", s.train) for i, s in enumerate(config.stages or []))]
    for where, train in trains:
        if train.packing and train.group_by_length:
            found.append((f"{where}.group_by_length", "train.packing already removes padding; set one of them, not both"))
    if config.train.packing or any(s.train.packing for s in config.stages or []):
        found += _packing_family_problem(config.model)
    if config.train.packing and config.multitask is not None and config.multitask.sampling.homogeneous_batches:
        found.append(("multitask.sampling.homogeneous_batches",
                      "packs mix the tasks of the sampled stream; set homogeneous_batches: false or train.packing: false"))
    return found


def _packing_family_problem(model: ModelSection) -> list[tuple[str, str]]:
    """The family refusal of `vlmtrain.data.packing`, read from a local model folder's config.json (no transformers
    import; a hub id is checked again when the run loads its config)."""


    path = Path(str(model.path)) / "config.json"
    if not path.is_file():
        return []
    try:
        family = FAMILIES.get(str(json.loads(path.read_text(encoding="utf-8")).get("model_type")))
    except (OSError, ValueError):
        return []
    problem = packing_problem(family=family) if family is not None else None
    return [("train.packing", problem)] if problem else []


def validate_train_config(data: dict[str, Any], *, base_dir: Path, what: str = "training config") -> TrainConfig:
    """Validate an already-loaded dict; every problem is raised together as one ConfigError."""
    nonfinite = nonfinite_problems(data)
    try:
        config = TrainConfig.model_validate(data, context={"base_dir": Path(base_dir)})
    except (TypeError, AttributeError, KeyError, OSError, RuntimeError) as e:  # a validator met an odd value
        raise ConfigError(nonfinite + [Problem("", f"cannot read this config: {type(e).__name__}: {e}")],
                          what=what) from None
    except ValidationError as err:
        seen = {p.path for p in nonfinite}  # the range check of a NaN says less than "not a finite number"
        found_first = [p for p in problems_from_validation_error(err, model=TrainConfig, data=data) if p.path not in seen]
        raise ConfigError(nonfinite + found_first, what=what) from None
    if nonfinite:
        raise ConfigError(nonfinite, what=what)
    plans = config.plans()
    found = [p for at in plans for p in plan_problems(plan=at.plan, method=config.method, where=at.where)]
    found += [p for at in plans if at.dpo for p in dpo_problems(plan=at.plan, where=at.where)]
    if config.continual is not None and config.stages:
        found.append(("continual", "continual and stages cannot be combined; use one of them"))
    found += strategy_problems(config.distributed)
    if config.train.group_by_length and (config.continual is not None or config.multitask is not None):
        found.append(("train.group_by_length", f"not used by {'continual' if config.continual else 'multitask'} "
                      "runs: their task sampler orders the data; remove it"))
    found += _packing_problems(config)
    found += kernel_problems(config)
    if config.quant is not None and config.method != "qlora":
        found.append(("quant", f"quant is used only with method: qlora (method is {config.method})"))
    if found:
        raise ConfigError([Problem(path, message) for path, message in found], what=what)
    return config


def load_train_config(path: str | Path, *, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read, merge (`extends:`), expand (`${VAR}`), override (`--set`) and validate a training YAML."""
    path = Path(path)
    what = f"training config {path}"
    try:
        data, _secrets = load_config_dict(path, overrides=list(overrides), what=what, model=TrainConfig)
    except ConfigError:
        raise
    except (UnicodeDecodeError, RecursionError, yaml.YAMLError, ValueError, TypeError, IndexError, KeyError,
            OSError) as e:  # the loader met a file or --set it did not foresee: still a problem, not a traceback
        where = "--set" if overrides and not isinstance(e, UnicodeDecodeError | RecursionError | OSError) else ""
        detail = {UnicodeDecodeError: "the file is not UTF-8 text", RecursionError: "a YAML alias refers to itself "
                  "(recursive anchors cannot be expanded)"}.get(type(e), " ".join(f"{type(e).__name__}: {e}".split()))
        if where:
            detail = f"an override could not be applied ({detail}); write key.path=value, e.g. train.lr=1e-4"
        raise ConfigError([Problem(where, f"cannot read {path}: {detail}")], what=what) from None
    return validate_train_config(data, base_dir=path.resolve().parent, what=what)


def config_to_yaml(config: TrainConfig) -> str:
    """The resolved config (absolute paths, defaults filled in), as written to `runs/NAME/config.yaml`."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
