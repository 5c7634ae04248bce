"""Recipe → the ordered list of steps. The order is fixed here, not by the user.

    load → instruct → write

Later stages (normalize, filter, dedup, split, mix, synthesize) slot in at their place in this list;
a recipe cannot reorder them (so it cannot, say, mix before dedup).
"""

from __future__ import annotations

from dataclasses import dataclass

from vlmdata.recipe import LoadedRecipe
from vlmdata.sources.base import SourceSpec
from vlmdata.steps.base import Step
from vlmdata.steps.instruct import InstructStep
from vlmdata.steps.load import LoadStep


@dataclass
class Plan:
    sources: list[SourceSpec]
    steps: list[Step]
    batch_size: int

    def describe(self) -> list[str]:
        lines = [f"source {s.name} ({s.kind}: {s.path}) task={s.task}" for s in self.sources]
        return lines + [f"step {i + 1}: {step.name}" for i, step in enumerate(self.steps)] + ["write"]


def make_plan(loaded: LoadedRecipe) -> Plan:
    recipe = loaded.recipe
    steps: list[Step] = [
        LoadStep(max_pixels=recipe.images.max_pixels, max_side=recipe.images.max_side,
                 source_kinds={s.name: s.kind for s in recipe.sources}),
        InstructStep(specs=recipe.instruct, seed=recipe.seed, base_dir=loaded.path.parent),
    ]
    return Plan(sources=list(recipe.sources), steps=steps, batch_size=recipe.batch_size)
