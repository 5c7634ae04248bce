"""Checks that need the model's config.json and its processor, but never its weights.

Why: a LoRA target typo and "every row is cut at max_length" should not wait for `run` to surface
after the model has loaded (minutes for a real model). Here the network is built on the meta device from
its config (`accelerate.init_empty_weights`: module names and shapes, no memory, no weights read),
and the LoRA targets of every component of every stage are matched against it exactly as
`vlmtrain.models.tuning` will; rows are tokenised with the processor as the collator does
(`vlmtrain.data.diagnostics`). `vlmtrain validate` runs both (rows on a sample); `vlmtrain run` runs the
target check before it loads weights.

Every failure here is a `Problem`, never a traceback: a config.json that transformers cannot build
is itself a problem at `model.path`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from vlmdata.config.errors import ConfigError, Problem
from vlmtrain.config.train import TrainConfig
from vlmtrain.data.collate import ChatCollator
from vlmtrain.data.dataset import open_split
from vlmtrain.data.diagnostics import diagnose
from vlmtrain.models.families import family_of
from vlmtrain.models.load import model_type
from vlmtrain.models.tuning import lora_modules

SAMPLE_ROWS = 256  # rows `vlmtrain validate` tokenises per data source


def meta_model(config: TrainConfig) -> Any:
    """The model of `config.model` with every parameter on the meta device (nothing allocated or read)."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForImageTextToText

    model_config = AutoConfig.from_pretrained(str(config.model.path), trust_remote_code=config.model.trust_remote_code)
    with init_empty_weights():
        return AutoModelForImageTextToText.from_config(model_config, trust_remote_code=config.model.trust_remote_code)


def target_problems(*, config: TrainConfig, model: Any) -> list[Problem]:
    """Every LoRA target that names no linear layer of its component, at the YAML key that set it."""
    family = family_of(str(model.config.model_type))
    problems: list[Problem] = []
    seen: set[tuple[str, str]] = set()
    for at in config.plans():
        prefix, written, plan = at.where, at.written, at.plan
        for name, component in plan.items():
            if component.train != "lora":
                continue
            section = getattr(written, name, None) if written is not None else None
            where = f"{prefix}.{name}.targets" if section is not None and section.targets else "lora.targets"
            if (where, name) in seen:
                continue
            seen.add((where, name))
            try:
                lora_modules(model=model, family=family, component=name, targets=component.targets, where=where)
            except ConfigError as err:
                problems.extend(err.problems)
    return problems


def check_targets(config: TrainConfig) -> None:
    """ConfigError with every LoRA target problem (the model is built on the meta device only)."""
    try:
        model = meta_model(config)
    except Exception as e:  # noqa: BLE001 - whatever transformers raises, the user gets a problem, not a traceback
        raise ConfigError([Problem("model.path", f"cannot build the model from its config.json: "
                                   f"{type(e).__name__}: {e}")], what="model") from None
    problems = target_problems(config=config, model=model)
    if problems:
        raise ConfigError(problems, what="LoRA targets")


def row_problems(*, config: TrainConfig, sample: int = SAMPLE_ROWS, echo: Callable[[str], None] | None = None
                 ) -> list[Problem]:
    """A problem per data source whose first `sample` rows would all be rejected at `data.max_length`.

    Only the processor is loaded. What a sample cannot prove (a bad row further on) `run` finds in the
    same way on every row, before it loads weights, and rejects that row alone.
    """
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(str(config.model.path), trust_remote_code=config.model.trust_remote_code)
    family = family_of(model_type(model=config.model))
    datas = [("data", config.data)] + [(f"stages[{i}].data", s.data) for i, s in enumerate(config.stages or [])
                                       if s.data is not None]
    problems: list[Problem] = []
    for where, data in datas:
        collator = ChatCollator(processor=processor, max_length=data.max_length, family=family)
        for j, source in enumerate(data.all_sources):
            dataset = open_split(path=source.path, split=source.split)
            dataset = dataset.select(range(min(sample, len(dataset))))
            diag = diagnose(dataset=dataset, collator=collator)
            rejected = diag.counts()
            what = ", ".join(f"{n} {reason}" for reason, n in sorted(rejected.items()))
            label = f"{source.path} [{source.split}]"
            if not diag.kept:
                key = f"{where}.max_length" if set(rejected) <= {"image_cut", "no_answer_tokens"} else (
                    f"{where}.sources[{j}].path" if data.sources else f"{where}.path")
                problems.append(Problem(key, f"all {len(dataset)} rows checked of {label} would be rejected "
                                        f"({what}) at max_length {data.max_length}; longest row "
                                        f"{max(diag.lengths)} tokens"))
            elif rejected and echo is not None:
                echo(f"note: {sum(rejected.values())} of the first {len(dataset)} rows of {label} would be "
                     f"rejected ({what}); `run` lists them in rejected_rows.jsonl")
    return problems


def preflight(*, config: TrainConfig, echo: Callable[[str], None] | None = None) -> None:
    """Both checks, every problem at once (what `vlmtrain validate` runs after the config itself is valid)."""
    problems: list[Problem] = []
    for check in (lambda: check_targets(config), lambda: _raise(row_problems(config=config, echo=echo))):
        try:
            check()
        except ConfigError as err:
            problems.extend(err.problems)
        except Exception as e:  # noqa: BLE001 - a processor or dataset that fails to load is a problem
            problems.append(Problem("model.path", f"cannot check the rows with this model's processor: "
                                    f"{type(e).__name__}: {e}"))
    if problems:
        raise ConfigError(problems, what=f"training config (checked against {config.model.path})")


def _raise(problems: list[Problem]) -> None:
    if problems:
        raise ConfigError(problems)
