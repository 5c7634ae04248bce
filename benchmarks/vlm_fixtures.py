"""Shared by bench_train.py and gpu_check.py: a random LLaVA at a chosen size, and vlmdata rows whose
answer lengths vary widely (1 to ~`max_answer_words` words), built offline.

The model comes from `vlmtrain.models.tiny.registry`'s LLaVA builder (its processor, tokenizer, chat template and
image-token layout), with the language model's config scaled up, so the benchmarks run the same code
paths as training does on a real LLaVA.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from vlmdata.schema import image_part, message, text_part

WORDS = (
    'the', 'scan', 'shows', 'a', 'small', 'nodule', 'in', 'the', 'left', 'lung', 'with', 'mild',
    'opacity', 'and', 'no', 'effusion;', 'the', 'heart', 'and', 'liver', 'look', 'normal,', 'the',
    'image', 'is', 'an', 'axial', 'CT', 'of', 'the', 'chest', 'taken', 'on', 'day', 'three',
)


def build_llava(*, hidden: int, layers: int, intermediate: int, heads: int, seed: int) -> tuple[Any, Any]:
    """(model, processor): tiny LLaVA's vision tower and processor, a Llama of the given size (random)."""
    import torch
    from transformers import LlavaForConditionalGeneration

    from vlmtrain.models.tiny.registry import FAMILIES

    small, processor = FAMILIES["llava"].build(seed=seed)
    config = small.config
    text = config.text_config
    text.hidden_size, text.num_hidden_layers, text.intermediate_size = hidden, layers, intermediate
    text.num_attention_heads = text.num_key_value_heads = heads
    text.head_dim = hidden // heads
    text.max_position_embeddings = 2048
    text.initializer_range = 0.02
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config)
    model.generation_config = small.generation_config
    return model, processor


def parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def png(*, rng: np.random.Generator, size: int = 32) -> bytes:
    from PIL import Image

    pixels = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG")
    return buf.getvalue()


def rows(*, n: int, max_answer_words: int, seed: int) -> list[dict[str, Any]]:
    """`n` one-image rows; answer lengths log-uniform in [1, max_answer_words] words (short and long mixed)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        words = int(np.exp(rng.uniform(0, np.log(max_answer_words))))
        answer = " ".join(rng.choice(WORDS, size=words))
        msgs = [message("user", [image_part(), text_part("Describe the image.")]),
                message("assistant", [text_part(answer)])]
        out.append({"id": f"r{i}", "task": "detail", "source": "bench", "images": [{"bytes": png(rng=rng), "path": None}],
                    "messages": msgs, "answers": [], "meta": "{}"})
    return out


def dataset(*, n: int, max_answer_words: int, seed: int) -> Any:
    """The rows as a `datasets.Dataset` in the vlmdata contract."""
    import datasets

    from vlmdata.schema import features

    return datasets.Dataset.from_list(rows(n=n, max_answer_words=max_answer_words, seed=seed), features=features())


# model sizes of the CPU training benchmarks (bench_train, bench_packing): one table, so both measure the same model
SIZES = {"full": {"hidden": 512, "layers": 12, "intermediate": 2048, "heads": 8},
         "quick": {"hidden": 256, "layers": 4, "intermediate": 1024, "heads": 4}}


def lora_setup(*, size: dict[str, int], n: int, max_answer_words: int) -> tuple[Any, Any, int, Any, Any, list[int]]:
    """The training benchmarks' common start, all seeded: (LoRA r=8 all-linear model, processor, base
    parameter count, dataset, collator, uncut token length per row)."""
    import torch
    from peft import LoraConfig, get_peft_model

    from vlmtrain.data.collate import ChatCollator
    from vlmtrain.data.diagnostics import diagnose

    model, processor = build_llava(seed=0, **size)
    params = parameters(model)
    torch.manual_seed(0)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="CAUSAL_LM",
                                             target_modules=lora_target_regex(model=model, targets="all-linear")))
    data = dataset(n=n, max_answer_words=max_answer_words, seed=0)
    collator = ChatCollator(processor=processor, max_length=2048)
    return model, processor, params, data, collator, diagnose(dataset=data, collator=collator).lengths


def language_model_prefix(model: Any) -> str:
    """The module path of the language model inside a VLM (e.g. 'model.language_model' for LLaVA)."""
    decoder = model.get_decoder()
    for name, module in model.named_modules():
        if module is decoder and name:
            return name
    raise ValueError(f"cannot locate the language model inside {type(model).__name__}")


def lora_target_regex(*, model: Any, targets: str | list[str]) -> str:
    """A regex (peft full-matches it against module names) selecting `targets` inside the LLM only.

    `targets` is 'all-linear' (every nn.Linear of the LLM; the LM head sits outside it) or leaf names.
    Unknown leaf names raise ValueError. The benchmarks wrap models with peft directly, so their LoRA is
    the same from one transformers version to the next; runs build theirs with `vlmtrain.models.tuning`.
    """
    import re

    import torch

    prefix = language_model_prefix(model)
    decoder = model.get_submodule(prefix)
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in decoder.named_modules() if isinstance(m, torch.nn.Linear) and n})
    if targets == "all-linear":
        leaves = linear
    else:
        names = {n.rsplit(".", 1)[-1] for n, _ in decoder.named_modules() if n}
        unknown = [t for t in targets if t not in names]
        if unknown:
            raise ValueError(f"no module(s) {unknown} in the language model (linear layers: {', '.join(linear)})")
        leaves = list(targets)
    return rf"{re.escape(prefix)}\.(?:.*\.)?(?:{'|'.join(map(re.escape, leaves))})"


def bench_trainer(*, grouped: bool, model: Any, processor: Any, data: Any, collator: Any, lengths: list[int],
                  batch: int, output_dir: str) -> Any:
    """The Trainer both benchmarks time: stock `transformers.Trainer` (random batches, the baseline) or ours
    with length grouping, on identical arguments (constant lr, CPU, no saving, seed 0)."""
    from transformers import Trainer, TrainingArguments

    from vlmtrain.training.trainer import VlmTrainer

    args = TrainingArguments(output_dir=output_dir, per_device_train_batch_size=batch, num_train_epochs=1,
                             learning_rate=1e-3, lr_scheduler_type="constant", logging_steps=1,
                             save_strategy="no", report_to=[], use_cpu=True, seed=0, data_seed=0,
                             remove_unused_columns=False, disable_tqdm=True, dataloader_num_workers=0)
    common = {"model": model, "args": args, "train_dataset": data, "data_collator": collator,
              "processing_class": processor}
    return VlmTrainer(lengths=lengths, callbacks=[], **common) if grouped else Trainer(**common)
