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
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vlmdata.config.errors import ConfigError, Problem, problems_from_validation_error
from vlmdata.config.io import load_config_dict
from vlmdata.config.limits import number_problems
from vlmdata.config.path_types import OutputPath
from vlmdata.config.sizes import ShardSize
from vlmdata.embed.spec import EmbedSpec
from vlmdata.engines.spec import EngineSpec, LocalEngine
from vlmdata.media.depth import DepthWindow
from vlmdata.media.verify import DEFAULT_MAX_PIXELS
from vlmdata.redact import Redactor
from vlmdata.sources import AnySource
from vlmdata.sources.dicom import DicomSpec
from vlmdata.steps.dedup import DedupSpec
from vlmdata.steps.filter import FilterItem
from vlmdata.steps.instruct import MC_SUFFIX as MC_SUFFIX  # re-exported: the instruct step owns it
from vlmdata.steps.instruct import InstructSpec
from vlmdata.steps.mix import MixSpec
from vlmdata.steps.normalize import NormalizeSpec
from vlmdata.steps.preference import PreferenceSpec
from vlmdata.steps.preference_checks import preference_calls, preference_cross_checks
from vlmdata.steps.split import SplitSpec
from vlmdata.synth.spec import SynthesizeSpec, synth_cross_checks


class ImageOptions(BaseModel):
    """How images are verified and stored. `max_side` shrinks larger images (aspect kept)."""

    model_config = ConfigDict(extra="forbid")
    max_side: int | None = Field(default=None, ge=8)
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, ge=1)
    depth: DepthWindow = Field(default_factory=DepthWindow)  # 16-bit/float greyscale -> 8 bits (depth.py)


class OutputSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: OutputPath | None = None  # default: out/<name> under the current folder
    max_shard_size: ShardSize = "500MB"
    exports: list[Literal["llava", "sharegpt", "swift", "jsonl", "webdataset", "lmms_eval"]] = Field(
        default_factory=list)  # into OUT/exports/<format> (vlmdata/output/export/formats.py)
    report: bool = True  # write report.html


class Recipe(BaseModel):
    """A whole build. Sections are listed here in the order the engine runs them."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=128)  # a folder name: out/NAME
    description: str = ""
    license: str | None = None
    seed: int = 0
    sources: list[AnySource] = Field(min_length=1)
    images: ImageOptions = Field(default_factory=ImageOptions)
    instruct: dict[str, InstructSpec] = Field(default_factory=dict)
    synthesize: list[SynthesizeSpec] = Field(default_factory=list)
    normalize: NormalizeSpec | None = None
    embed: EmbedSpec | None = None  # the model for semantic dedup and clip_score (runs only when one needs it)
    filter: list[FilterItem] = Field(default_factory=list)
    preference: PreferenceSpec | None = None  # rows → (prompt, chosen, rejected) pairs (steps/preference.py)
    dedup: DedupSpec | None = None
    split: SplitSpec | None = None
    mix: MixSpec | None = None
    output: OutputSpec = Field(default_factory=OutputSpec)
    batch_size: int = Field(default=256, ge=1, le=65536)  # rows held (decoded) at once per worker
    engine: EngineSpec = Field(default_factory=LocalEngine)  # where the steps run; never changes the output
    # fail (and keep the previous output) when a stage rejects more than this share (vlmdata/reject_budget.py)
    max_reject_ratio: Annotated[float, Field(ge=0, le=1)] | dict[str, Annotated[float, Field(ge=0, le=1)]] | None = None

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

    def redactor(self) -> Redactor:
        """Every secret this recipe can bring: credential-like env vars it expands, each job's
        `api_key_env` (whatever its name) and keys written into an endpoint's base_url."""
        jobs = [*self.recipe.synthesize, *preference_calls(spec=self.recipe.preference, seed=self.recipe.seed)]
        return Redactor(env_names=set(self.secret_env) | {j.endpoint.api_key_env for j in jobs},
                        urls=[j.base_url() for j in jobs])

    def redacted(self) -> dict[str, Any]:
        """The resolved recipe for manifests: secret values replaced by ${NAME} (or masked)."""
        return _redact(self.recipe.model_dump(mode="json"), self.redactor())


def _redact(value: Any, redact: Redactor) -> Any:
    if isinstance(value, dict):
        return {k: _redact(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v, redact) for v in value]
    if isinstance(value, str):
        return redact(value)
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
    problems += synth_cross_checks(jobs=recipe.synthesize, source_names=[s.name for s in recipe.sources])
    problems += embed_cross_checks(recipe)
    problems += preference_cross_checks(spec=recipe.preference, seed=recipe.seed)
    return problems


def embed_cross_checks(recipe: Recipe) -> list[Problem]:
    """Steps that read embeddings need the `embed:` model that makes them."""
    if recipe.embed is not None:
        return []
    needs = [f"filter[{i}].clip_score" for i, item in enumerate(recipe.filter) if item.clip_score is not None]
    if recipe.dedup is not None and recipe.dedup.images is not None and recipe.dedup.images.method == "semantic":
        needs.append("dedup.images.method")
    return [Problem(p, "needs image embeddings: add an `embed:` section naming the model, e.g. "
                       "embed: {model: models/clip-vit-b32} (a local save_pretrained folder)") for p in needs]


def recipe_hash(raw: dict[str, Any]) -> str:
    """The hash every row's meta records. `engine` is left out: it changes where steps run, not the data."""
    data = {k: v for k, v in raw.items() if k != "engine"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _with_env(env: list[Problem], problems: list[Problem]) -> list[Problem]:
    """Unset-variable problems first; a later problem at the same place (the unexpanded `${VAR}` read as a
    value) is their consequence and is left out."""
    where = {p.path for p in env}
    return env + [p for p in problems if p.path not in where]


def load_recipe(path: str | Path, *, overrides: list[str] = (), base_dir: Path | None = None) -> LoadedRecipe:
    """Read and validate a recipe; raise ConfigError listing every problem, with YAML paths.

    Relative paths resolve against the recipe's folder, or `base_dir` when given (a recipe written
    elsewhere on behalf of a config in `base_dir`, e.g. vlmtrain's `data.sources[].kind`)."""
    path = Path(path)
    what = f"recipe {path}"
    env: list[Problem] = []  # unset ${VAR}s: reported with every other problem, not instead of them
    raw, secrets = load_config_dict(path, overrides=list(overrides), what=what, model=Recipe, env_problems=env)
    try:
        recipe = Recipe.model_validate(raw, context={"base_dir": str(base_dir or path.resolve().parent),
                                                     "seed": raw.get("seed", 0)})  # sources that sample read it
    except ValidationError as err:
        found = problems_from_validation_error(err, model=Recipe, data=raw)
        where = {p.path for p in found}
        found += [p for p in number_problems(raw=raw, instance=None) if p.path not in where]
        raise ConfigError(_with_env(env, found), what=what) from None
    problems = number_problems(raw=raw, instance=recipe) + cross_checks(recipe)
    if problems or env:
        raise ConfigError(_with_env(env, problems), what=what)
    return LoadedRecipe(recipe=recipe, path=path.resolve(), raw=raw, sha256=recipe_hash(raw), secret_env=secrets)
