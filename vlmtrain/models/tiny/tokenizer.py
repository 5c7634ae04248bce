"""An offline BPE tokenizer and chat template for tiny test models.

Tests and CPU smoke runs need a real tokenizer (byte-level BPE, special tokens, a chat template) but
must never download one, so we train one in well under a second on a small built-in corpus. Byte-level
BPE can encode any text, so words outside the corpus still work; they just take more tokens.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from transformers import PreTrainedTokenizerFast

BOS, EOS, PAD, UNK = "<s>", "</s>", "<pad>", "<unk>"
ROLE_TOKENS: tuple[str, ...] = ("<|system|>", "<|user|>", "<|assistant|>")

_CORPUS: tuple[str, ...] = (
    "What is shown in this image? Describe the picture in detail.",
    "Answer the question using a single word or phrase.",
    "The image shows a red square on a blue background. There is a small green circle.",
    "Is there a cat in the photo? Yes. No. How many people are there? Two. Three.",
    "What colour is the car? The car is white and the sky is grey.",
    "You are a helpful assistant. Please look at the image and answer the question.",
    "What modality is this scan? CT. MR. MRI. X-ray. Ultrasound. PET.",
    "Which plane is this image taken in? Axial. Coronal. Sagittal.",
    "Which organ is shown? Chest, lung, lungs, heart, liver, kidney, brain, abdomen, pelvis, spine.",
    "Is there an abnormality? The axial CT scan of the chest shows a nodule in the left lung.",
    "The MR image of the brain shows no acute findings. The modality is MR and the plane is axial.",
    "Is this a contrast enhanced scan? Is the lesion on the left or right side? Left. Right.",
    "Report: normal study, no fracture, no effusion, mild opacity, mass, edema, pneumonia.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 11 12 16 20 32 64 100 2024. Slice 5 of 20, 3 mm, 512 x 512.",
    "The patient is a 45 year old man. The scan was taken on day 3.",
)
# Short answers start a turn (no leading space), so they get their own merges too.
_ANSWERS: tuple[str, ...] = (
    "CT", "MR", "MRI", "Axial", "axial", "Coronal", "Sagittal", "Chest", "chest", "Lung", "Brain",
    "Yes", "No", "Left", "Right", "Normal", "Both", "The", "A", "It", "This",
)


def corpus() -> list[str]:
    """The built-in training text (repeated so merges of frequent words are learned)."""
    return [line for line in _CORPUS + _ANSWERS for _ in range(4)]


def train_tokenizer(
    *,
    vocab_size: int = 512,
    extra_special_tokens: dict[str, str],
    bos: str | None = BOS,
    eos: str = EOS,
    pad: str = PAD,
    unk: str | None = UNK,
    specials: tuple[str, ...] = ROLE_TOKENS,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer and wrap it for transformers.

    `extra_special_tokens` maps attribute names to tokens (e.g. ``{"image_token": "<image>"}``); each
    becomes an atomic special token and an attribute of the tokenizer, which is how multimodal
    processors find their placeholder. `bos`/`eos`/`pad`/`unk` and `specials` (more atomic special
    tokens: role markers, end-of-turn tokens) give a tiny model its checkpoint's special tokens, so its
    real chat template renders unchanged (Qwen has no BOS: `bos=None`). The result is deterministic:
    same corpus, same vocabulary.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    named = [t for t in (pad, bos, eos, unk) if t]
    specials = list(dict.fromkeys([*named, *extra_special_tokens.values(), *specials]))
    backend = Tokenizer(models.BPE(unk_token=unk))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token=unk,
        extra_special_tokens=dict(extra_special_tokens),
        padding_side="right",
        model_max_length=512,
    )


def chat_template(*, image_placeholder: str) -> str:
    """A Jinja chat template in the HF multimodal style.

    `content` may be a string or a list of ``{"type": "image"}`` / ``{"type": "text", "text": ...}``
    parts; image parts render as `image_placeholder`, in place, so the order of images in the text is
    the order of the row's `images`. Each turn is ``<|role|>\\n ... </s>``: ending assistant turns with
    EOS is what teaches the model to stop. Assistant turns sit in ``{% generation %}`` blocks, so
    `return_assistant_tokens_mask` works too.
    """
    placeholder = image_placeholder.replace("'", "\\'")
    return (
        "{%- macro render(content) -%}"
        "{%- if content is string -%}{{ content }}"
        "{%- else -%}{%- for part in content -%}"
        f"{{%- if part['type'] == 'image' -%}}{{{{ '{placeholder}' }}}}"
        "{%- elif part['type'] == 'text' -%}{{ part['text'] }}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "{%- endmacro -%}"
        "{{ bos_token }}"
        "{%- for message in messages -%}"
        "{{ '<|' + message['role'] + '|>\\n' }}"
        "{%- if message['role'] == 'assistant' -%}"
        "{% generation %}{{ render(message['content']) + eos_token }}{% endgeneration %}"
        "{%- else -%}{{ render(message['content']) + eos_token }}{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|assistant|>\\n' }}{%- endif -%}"
    )
