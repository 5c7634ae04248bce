"""Everything vlmtrain knows about a model family, in one table (keyed by `config.model_type`).

Why a table: the rest of the code (collator, component freezing, parameter groups, quantisation) asks
this table instead of branching on class names, so adding a family is one entry here plus one tiny
config in `vlmtrain.tiny_builders`. The model and processor themselves always come from the Auto
classes; nothing here imports transformers.

Module prefixes are paths in the model as the Auto class loads it (transformers 5 layout), e.g.
`model.vision_tower.encoder.layers.0...`. A parameter belongs to the component with the longest
matching prefix, so a projector nested inside the vision module (Qwen2-VL's `model.visual.merger`)
is still the projector. What matches nothing is `other`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

COMPONENTS: tuple[str, ...] = ("vision", "projector", "llm")
OTHER = "other"
_PEFT_PREFIX = "base_model.model."


@dataclass(frozen=True, kw_only=True)
class Family:
    """How one family is laid out and fed.

    `nested_images`: the processor takes images per row (`[[img, img], [img]]`) instead of one flat list.
    `prompt`: 'chat' renders turns with the processor's chat template; 'prefix_suffix' (PaliGemma, no
    chat template) passes the question as `text` and the answer as `suffix`, and the processor's
    `token_type_ids` mark the suffix, which is what the model learns.
    """

    model_type: str
    vision: tuple[str, ...]
    projector: tuple[str, ...]
    llm: tuple[str, ...]
    nested_images: bool = False
    prompt: Literal["chat", "prefix_suffix"] = "chat"
    packing_supported: bool = False  # `train.packing` is exact for it (proved in tests/vlmtrain/test_packing.py)

    def prefixes(self, component: str) -> tuple[str, ...]:
        """The module prefixes of `component` ('vision', 'projector' or 'llm')."""
        return {"vision": self.vision, "projector": self.projector, "llm": self.llm}[component]

    def component_of(self, name: str) -> str:
        """'vision', 'projector', 'llm' or 'other' for a parameter or module name (peft prefix allowed)."""
        name = name.removeprefix(_PEFT_PREFIX)
        best, length = OTHER, -1
        for component in COMPONENTS:
            for prefix in self.prefixes(component):
                if (name == prefix or name.startswith(prefix + ".")) and len(prefix) > length:
                    best, length = component, len(prefix)
        return best


FAMILIES: dict[str, Family] = {
    family.model_type: family
    for family in (
        Family(
            model_type="llava",
            vision=("model.vision_tower",),
            projector=("model.multi_modal_projector",),
            llm=("model.language_model", "lm_head"),
            packing_supported=True,
        ),
        Family(
            model_type="qwen2_vl",
            vision=("model.visual",),
            projector=("model.visual.merger",),
            llm=("model.language_model", "lm_head"),
            packing_supported=True,  # mRoPE per row via vlmtrain.packing.attach_packed_mrope
        ),
        Family(
            model_type="idefics3",
            vision=("model.vision_model",),
            projector=("model.connector",),
            llm=("model.text_model", "lm_head"),
            nested_images=True,
            packing_supported=True,
        ),
        Family(
            model_type="paligemma",
            vision=("model.vision_tower",),
            projector=("model.multi_modal_projector",),
            llm=("model.language_model", "lm_head"),
            prompt="prefix_suffix",
        ),
    )
}


def family_of(model_type: str) -> Family:
    """The table entry for `model_type` (a model's `config.model_type`); ValueError names the known ones."""
    if model_type not in FAMILIES:
        raise ValueError(
            f"model type '{model_type}' is not in vlmtrain.families.FAMILIES "
            f"(known: {', '.join(sorted(FAMILIES))}); add an entry with its module prefixes"
        )
    return FAMILIES[model_type]
