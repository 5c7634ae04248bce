"""Recipe → the ordered list of steps. The order is fixed here, not by the user.

    load → instruct → write

Later stages (normalize, filter, dedup, split, mix, synthesize) slot in at their place in this list;
a recipe cannot reorder them (so it cannot, say, mix before dedup).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from vlmdata.embed.step import EmbedStep
from vlmdata.recipe import LoadedRecipe
from vlmdata.sources.base import SourceSpec
from vlmdata.steps.base import Step
from vlmdata.steps.dedup.step import DedupStep
from vlmdata.steps.filter import build_filters
from vlmdata.steps.instruct import InstructStep
from vlmdata.steps.load import LoadStep
from vlmdata.steps.mix import MixStep
from vlmdata.steps.normalize import NormalizeStep
from vlmdata.steps.preference import PreferenceStep
from vlmdata.steps.preference_judge import PreferenceJudgeStep
from vlmdata.steps.split import SplitStep
from vlmdata.steps.synthesize import SynthesizeStep


@dataclass
class Plan:
    sources: list[SourceSpec]
    steps: list[Step]
    batch_size: int

    def describe(self) -> list[str]:
        lines = [f"source {s.name} ({s.kind}: {s.path}) task={s.task}" for s in self.sources]
        return lines + [f"step {i + 1}: {step.name}" for i, step in enumerate(self.steps)] + ["write"]


def _embed_step(loaded: LoadedRecipe, *, cache: Path) -> EmbedStep | None:
    """The embed stage when a step reads embeddings (semantic dedup, clip_score), else None."""
    recipe = loaded.recipe
    roles = [item.clip_score.text for item in recipe.filter if item.clip_score is not None]
    semantic = recipe.dedup is not None and recipe.dedup.images is not None and recipe.dedup.images.method == "semantic"
    if recipe.embed is None or not (roles or semantic):
        return None
    return EmbedStep(spec=recipe.embed, roles=roles, cache_dir=cache)


def make_plan(loaded: LoadedRecipe, *, out: Path | None = None, cache_dir: Path | None = None) -> Plan:
    """`out` (the build's output folder) places the synthesis cache at OUT/../.vlmdata-cache unless
    `cache_dir` is given."""
    recipe = loaded.recipe
    steps: list[Step] = [
        LoadStep(max_pixels=recipe.images.max_pixels, max_side=recipe.images.max_side,
                 source_kinds={s.name: s.kind for s in recipe.sources}, depth=recipe.images.depth),
        InstructStep(specs=recipe.instruct, seed=recipe.seed, base_dir=loaded.path.parent),
    ]
    if recipe.synthesize:
        cache = cache_dir or (out or recipe.output_path()).resolve().parent / ".vlmdata-cache"
        steps.append(SynthesizeStep(specs=recipe.synthesize, seed=recipe.seed, base_dir=loaded.path.parent,
                                    cache_dir=cache))
    if recipe.normalize is not None:
        steps.append(NormalizeStep.from_spec(recipe.normalize))
    filters = build_filters(recipe.filter)  # each filter its own stage in the funnel
    embed = _embed_step(loaded, cache=cache_dir or (out or recipe.output_path()).resolve().parent / ".vlmdata-cache")
    # embeddings are made just before the first step that reads them (cheap filters first save work)
    first = next((i for i, item in enumerate(recipe.filter) if item.clip_score is not None), len(filters))
    steps.extend(filters[:first])
    if embed is not None and first < len(filters):
        steps.append(embed)
    steps.extend(filters[first:])
    if embed is not None and first == len(filters):
        steps.append(embed)
    if recipe.preference is not None and recipe.preference.from_ == "judge":  # a map step: requests per prompt
        steps.append(PreferenceJudgeStep(spec=recipe.preference, seed=recipe.seed, base_dir=loaded.path.parent,
                                         cache_dir=cache_dir or (out or recipe.output_path()).resolve().parent
                                         / ".vlmdata-cache"))
    elif recipe.preference is not None:  # before dedup/split/mix: they see pairs like any other row
        steps.append(PreferenceStep(spec=recipe.preference, seed=recipe.seed))
    if recipe.dedup is not None:
        steps.append(DedupStep(spec=recipe.dedup, seed=recipe.seed, embed=embed))
    if recipe.split is not None:
        steps.append(SplitStep(spec=recipe.split, seed=recipe.seed))
    if recipe.mix is not None:
        steps.append(MixStep(spec=recipe.mix, seed=recipe.seed))
    return Plan(sources=list(recipe.sources), steps=steps, batch_size=recipe.batch_size)
