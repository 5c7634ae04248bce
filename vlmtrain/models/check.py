"""What `vlmtrain validate` checks about the model, before any weight is read.

- its `config.json` (local, or that one file from the hub): an unreachable hub id is one paragraph
  naming the model, the cause and the fix (`vlmtrain.models.load.hub_message`);
- its `model_type` is a family vlmtrain supports (listed when it is not);
- `model.processor` settings are ones the family has (`vlmtrain.config.processor`);
- its chat template (after `model.chat_template` / `model.thinking`) can supervise exactly the
  answers (`vlmtrain.data.chat.template_problem`); the fix named is the family's shipped template.

Why at validation: a run that dies after the data diagnostics, or mid-epoch, on a template that was
never usable wastes a GPU hour. The processor (tokenizer files) is loaded for the template check; the
weights never are.
"""

from __future__ import annotations

from vlmdata.config.errors import ConfigError, Problem
from vlmtrain.config.processor import problems as processor_problems
from vlmtrain.config.train import TrainConfig
from vlmtrain.data.chat import template_problem
from vlmtrain.models.families import FAMILIES
from vlmtrain.models.load import load_processor, read_model_config


def model_problems(config: TrainConfig) -> list[Problem]:
    """Every problem with `config.model` that can be found from config.json and the processor."""
    try:
        raw = read_model_config(model=config.model)
    except ConfigError as err:
        return list(err.problems)
    model_type = raw.get("model_type")
    if model_type not in FAMILIES:
        return [Problem("model.path", f"model type '{model_type}' ({config.model.path}) is not a family vlmtrain "
                                      f"supports; supported: {', '.join(sorted(FAMILIES))}")]
    family = FAMILIES[model_type]
    found = [Problem(path, message) for path, message in
             processor_problems(family=family, settings=config.model.processor, config=raw)]
    if config.model.thinking == "keep" and not family.thinking and config.model.chat_template is None:
        found.append(Problem("model.thinking", f"family '{model_type}' has no thinking chat template; "
                                               "leave model.thinking out"))
    if found or family.prompt != "chat":
        return found

    try:
        processor = load_processor(model=config.model)
    except ConfigError as err:
        return list(err.problems)
    problem = template_problem(processor)
    if problem is not None:
        if family.fixed_template:
            fix = f"set model.chat_template: {family.fixed_template} (shipped)"
        elif family.thinking:
            fix = "leave model.chat_template unset and choose model.thinking: off or keep"
        else:
            fix = "set model.chat_template to a template file"
        where = "model.chat_template" if config.model.chat_template else "model.path"
        found.append(Problem(where, f"the chat template of '{config.model.path}' (family {model_type}) cannot be "
                                    f"trained on: {problem}; {fix}"))
    return found


def check_model(config: TrainConfig) -> None:
    """Raise ConfigError with every problem `model_problems` finds."""
    found = model_problems(config)
    if found:
        raise ConfigError(found, what="model")
