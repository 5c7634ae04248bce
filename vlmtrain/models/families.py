"""Everything vlmtrain knows about a model family, in one table (keyed by `config.model_type`).

Why a table: the rest of the code (collator, component freezing, parameter groups, quantisation) asks
this table instead of branching on class names, so adding a family is one entry here plus one tiny
config in `vlmtrain.models.tiny.builders`. The model and processor themselves always come from the Auto
classes; nothing here imports transformers.

Module prefixes are paths in the model as the Auto class loads it (transformers 5 layout), e.g.
`model.vision_tower.encoder.layers.0...`. A parameter belongs to the component with the longest
matching prefix, so a projector nested inside the vision module (Qwen2-VL's `model.visual.merger`)
is still the projector. A prefix segment `*` matches any one segment (a layer index), which is how
Mllama's cross-attention blocks, interleaved with the LLM's own layers, are their own component.
Every parameter must fall into a component: `component_of` raises `UncoveredParameter` (naming the
parameter and the family) for one that no prefix covers, and `check_coverage` lists them all at once.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

COMPONENTS: tuple[str, ...] = ("vision", "projector", "llm", "cross_attention")
OTHER = "other"
_PEFT_PREFIX = "base_model.model."
ProcessorKind = Literal["qwen", "idefics", "llava_next", "fixed"]


class UncoveredParameter(ValueError):
    """A parameter that no module prefix of its family covers (the family table is missing a prefix)."""


@functools.cache
def _pattern(prefix: str) -> re.Pattern[str]:
    body = r"\.".join("[^.]+" if seg == "*" else re.escape(seg) for seg in prefix.split("."))
    return re.compile(rf"{body}(?:\..*)?")


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
    cross_attention: tuple[str, ...] = ()
    nested_images: bool = False
    prompt: Literal["chat", "prefix_suffix"] = "chat"
    # which processor settings (`model.processor`) the family takes; see vlmtrain.config.processor
    processor: ProcessorKind = "fixed"
    # the family's chat templates reason in <think> blocks; `model.thinking` picks off (default) or keep
    thinking: bool = False
    # a shipped template (vlmtrain/chat_templates/NAME.jinja) that replaces the checkpoint's when the
    # collator cannot use it (say, a generation prompt that is not a prefix of the rendered answer)
    fixed_template: str | None = None
    packing_supported: bool = False  # `train.packing` is exact for it (proved in tests/vlmtrain/data/test_packing.py)

    def prefixes(self, component: str) -> tuple[str, ...]:
        """The module prefixes of `component` ('vision', 'projector', 'llm' or 'cross_attention')."""
        return {"vision": self.vision, "projector": self.projector, "llm": self.llm,
                "cross_attention": self.cross_attention}[component]

    def find_component(self, name: str) -> str | None:
        """The component of a parameter or module name (peft prefix allowed), or None (e.g. a parent module)."""
        name = name.removeprefix(_PEFT_PREFIX)
        best, length = None, -1
        for component in COMPONENTS:
            for prefix in self.prefixes(component):
                if len(prefix) > length and _pattern(prefix).fullmatch(name):
                    best, length = component, len(prefix)
        return best

    def component_of(self, name: str) -> str:
        """The component of a parameter; UncoveredParameter names it and the family when none covers it."""
        component = self.find_component(name)
        if component is None:
            raise UncoveredParameter(_uncovered_message(family=self, names=[name]))
        return component

    def check_coverage(self, names: Iterable[str]) -> None:
        """Raise UncoveredParameter listing every parameter name that falls into no component."""
        missing = [n for n in names if self.find_component(n) is None]
        if missing:
            raise UncoveredParameter(_uncovered_message(family=self, names=missing))


def _uncovered_message(*, family: Family, names: list[str]) -> str:
    shown = ", ".join(n.removeprefix(_PEFT_PREFIX) for n in names[:5]) + (" ..." if len(names) > 5 else "")
    return (
        f"{len(names)} parameter(s) of family '{family.model_type}' fall into no component ({shown}); "
        "add their module prefix to the family's entry in vlmtrain/models/families.py (vision, projector, llm "
        "or cross_attention)"
    )


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
            packing_supported=True,  # mRoPE per row via vlmtrain.data.packing.attach_packed_mrope
        ),
        Family(
            model_type="idefics3",
            vision=("model.vision_model",),
            projector=("model.connector",),
            llm=("model.text_model", "lm_head"),
            nested_images=True,
            processor="idefics",
            packing_supported=True,
        ),
        Family(
            model_type="qwen2_5_vl",
            vision=("model.visual",),
            projector=("model.visual.merger",),
            llm=("model.language_model", "lm_head"),
            processor="qwen",
            packing_supported=True,  # mRoPE per row (attach_packed_mrope)
        ),
        Family(
            model_type="qwen3_vl",
            vision=("model.visual",),
            projector=("model.visual.merger", "model.visual.deepstack_merger_list"),
            llm=("model.language_model", "lm_head"),
            processor="qwen",
            packing_supported=True,  # mRoPE per row; DeepStack features land on the row's own image tokens
        ),
        Family(
            model_type="qwen3_5",
            vision=("model.visual",),
            projector=("model.visual.merger",),
            llm=("model.language_model", "lm_head"),
            processor="qwen",
            thinking=True,
            # packing refused: its linear-attention (Gated DeltaNet) layers would carry state across rows
        ),
        Family(
            model_type="gemma3",
            vision=("model.vision_tower",),
            projector=("model.multi_modal_projector",),
            llm=("model.language_model", "lm_head"),
            nested_images=True,
            packing_supported=True,  # bidirectional image blocks per row (vlmtrain.models.packing_masks)
        ),
        Family(
            model_type="llava_next",
            vision=("model.vision_tower",),
            projector=("model.multi_modal_projector", "model.image_newline"),
            llm=("model.language_model", "lm_head"),
            processor="llava_next",
            fixed_template="llava_next-mistral",
            packing_supported=True,
        ),
        Family(
            model_type="llava_onevision",
            vision=("model.vision_tower",),
            projector=("model.multi_modal_projector", "model.image_newline"),
            llm=("model.language_model", "lm_head"),
            processor="llava_next",
            fixed_template="llava_onevision",
            packing_supported=True,
        ),
        Family(
            model_type="smolvlm",
            vision=("model.vision_model",),
            projector=("model.connector",),
            llm=("model.text_model", "lm_head"),
            nested_images=True,
            processor="idefics",
            packing_supported=True,
        ),
        Family(
            model_type="mistral3",
            vision=("model.vision_tower",),
            projector=("model.multi_modal_projector",),
            llm=("model.language_model", "lm_head"),
            packing_supported=True,
        ),
        Family(
            model_type="internvl",
            vision=("model.vision_tower",),
            projector=("model.multi_modal_projector",),
            llm=("model.language_model", "lm_head"),
            packing_supported=True,
        ),
        Family(
            model_type="aya_vision",
            vision=("model.vision_tower",),
            projector=("model.multi_modal_projector",),
            llm=("model.language_model", "lm_head"),
            packing_supported=True,
        ),
        Family(
            model_type="glm4v",
            vision=("model.visual",),
            projector=("model.visual.merger", "model.visual.downsample"),
            llm=("model.language_model", "lm_head"),
            processor="qwen",
            packing_supported=True,  # mRoPE per row (attach_packed_mrope)
        ),
        Family(
            model_type="mllama",
            vision=("model.vision_model",),
            projector=("model.multi_modal_projector",),
            llm=("model.language_model", "lm_head"),
            cross_attention=("model.language_model.layers.*.cross_attn", "model.language_model.layers.*.cross_attn_attn_gate",
                             "model.language_model.layers.*.cross_attn_mlp_gate"),
            nested_images=True,
            # packing refused: tokens before a row's first image cross-attend to every image of the batch (Mllama's rule
            # for tokens with no image yet), so a packed row's prompt would read other rows' images
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
            f"model type '{model_type}' is not in vlmtrain.models.families.FAMILIES "
            f"(known: {', '.join(sorted(FAMILIES))}); add an entry with its module prefixes"
        )
    return FAMILIES[model_type]
