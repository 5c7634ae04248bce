"""The recipe: YAML → a typed, validated model, or every problem at once.

    recipe = load_recipe("recipes/medical.yaml", overrides=["seed=1"])

Loading merges `extends:`, expands `${VAR}` / `${VAR:-default}`, applies `--set` overrides, resolves
relative paths against the recipe's folder, and checks that every referenced file and template
exists. Nothing is read beyond the recipe files themselves, and nothing is written, until this passes.
The section order in the YAML does not matter: the engine fixes the stage order.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from vlmdata.config_io import load_config_dict
from vlmdata.engines.spec import EngineSpec, LocalEngine
from vlmdata.media import DEFAULT_MAX_PIXELS
from vlmdata.paths import OutputPath
from vlmdata.sources import AnySource
from vlmdata.sources.dicom import DicomSpec
from vlmdata.steps.dedup import DedupSpec
from vlmdata.steps.filter import FilterItem
from vlmdata.steps.mix import MixSpec
from vlmdata.steps.normalize import NormalizeSpec
from vlmdata.steps.preference import PreferenceSpec
from vlmdata.steps.split import SplitSpec
from vlmdata.synth.spec import SynthesizeSpec, synth_cross_checks
from vlmdata.templates_lib import check_template
from vlmdata.validation import ConfigError, Problem, problems_from_validation_error

MC_SUFFIX = "Answer with the option's letter from the given choices directly."


class ImageOptions(BaseModel):
    """How images are verified and stored. `max_side` shrinks larger images (aspect kept)."""

    model_config = ConfigDict(extra="forbid")
    max_side: int | None = Field(default=None, ge=8)
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1)


class InstructSpec(BaseModel):
    """How rows of one task become chat turns without an LLM.

    VQA rows (a question) get `suffix` appended (LLaVA-1.5: "Answer the question using a single word or
    phrase."); multiple-choice rows (question + choices) get lettered options and `mc_suffix`; caption
    rows draw an instruction from `prompts` (a built-in pool by default) with the recipe seed; a
    `template` renders the turns from the row's fields instead.
    """

    model_config = ConfigDict(extra="forbid")
    suffix: str | None = None
    mc_suffix: str = MC_SUFFIX
    prompts: list[str] | None = Field(default=None, min_length=1)
    template: str | None = None
    system: str | None = None

    @field_validator("template")
    @classmethod
    def _template_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        base = Path((info.context or {}).get("base_dir", "."))
        problem = check_template(value, base_dir=base)
        if problem:
            raise ValueError(problem)
        return value


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: OutputPath | None = None  # default: out/<name> under the current folder
    max_shard_size: str = "500MB"
    exports: list[Literal["llava", "sharegpt", "swift", "jsonl", "webdataset", "lmms_eval"]] = Field(
        default_factory=list)  # into OUT/exports/<format> (vlmdata/export.py)
    report: bool = True  # write report.html


class Recipe(BaseModel):
    """A whole build. Sections are listed here in the order the engine runs them."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    license: str | None = None
    seed: int = 0
    sources: list[AnySource] = Field(min_length=1)
    images: ImageOptions = Field(default_factory=ImageOptions)
    instruct: dict[str, InstructSpec] = Field(default_factory=dict)
    synthesize: list[SynthesizeSpec] = Field(default_factory=list)
    normalize: NormalizeSpec | None = None
    filter: list[FilterItem] = Field(default_factory=list)
    preference: PreferenceSpec | None = None  # rows → (prompt, chosen, rejected) pairs (steps/preference.py)
    dedup: DedupSpec | None = None
    split: SplitSpec | None = None
    mix: MixSpec | None = None
    output: OutputSpec = Field(default_factory=OutputSpec)
    batch_size: int = Field(default=256, ge=1)
    engine: EngineSpec = Field(default_factory=LocalEngine)  # where the steps run; never changes the output

    def output_path(self) -> Path:
        return self.output.path or (Path.cwd() / "out" / self.name).resolve()


@dataclass
class LoadedRecipe:
    """A validated recipe plus what the build records about it."""

    recipe: Recipe
    path: Path
    raw: dict[str, Any]  # merged, env-expanded, overridden YAML (before path resolution)
    sha256: str
    secret_env: set[str] = field(default_factory=set)

    def redacted(self) -> dict[str, Any]:
        """The resolved recipe for manifests: values of credential-like env vars replaced by ${NAME}."""
        import os

        dumped = self.recipe.model_dump(mode="json")
        secrets = {os.environ[n]: f"${{{n}}}" for n in self.secret_env if os.environ.get(n)}
        return _redact(dumped, secrets)


def _redact(value: Any, secrets: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, secrets) for v in value]
    if isinstance(value, str):
        for secret, name in secrets.items():
            value = value.replace(secret, name)
    return value


def cross_checks(recipe: Recipe) -> list[Problem]:
    """Problems that involve several sections (run once the structure itself is valid)."""
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for i, src in enumerate(recipe.sources):
        if src.name in seen:
            problems.append(Problem(f"sources[{i}].name", f"duplicate source name '{src.name}' (also sources[{seen[src.name]}])"))
        seen.setdefault(src.name, i)
        if isinstance(src, DicomSpec) and src.labels is None:
            spec = recipe.instruct.get(src.task)
            if spec is None or spec.template is None:
                problems.append(Problem(
                    f"sources[{i}].task",
                    f"dicom rows carry header context but no question or caption: add "
                    f"instruct.{src.task}.template (e.g. medical/report) or give the source `labels`",
                ))
    problems += synth_cross_checks(recipe)
    return problems


def recipe_hash(raw: dict[str, Any]) -> str:
    """The hash every row's meta records. `engine` is left out: it changes where steps run, not the data."""
    data = {k: v for k, v in raw.items() if k != "engine"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def load_recipe(path: str | Path, *, overrides: list[str] = ()) -> LoadedRecipe:
    """Read and validate a recipe; raise ConfigError listing every problem, with YAML paths."""
    path = Path(path)
    raw, secrets = load_config_dict(path, overrides=list(overrides), what=f"recipe {path}")
    try:
        recipe = Recipe.model_validate(raw, context={"base_dir": str(path.resolve().parent),
                                                     "seed": raw.get("seed", 0)})  # sources that sample read it
    except ValidationError as err:
        raise ConfigError(problems_from_validation_error(err, model=Recipe, data=raw), what=f"recipe {path}") from None
    problems = cross_checks(recipe)
    if problems:
        raise ConfigError(problems, what=f"recipe {path}")
    return LoadedRecipe(recipe=recipe, path=path.resolve(), raw=raw, sha256=recipe_hash(raw), secret_env=secrets)
