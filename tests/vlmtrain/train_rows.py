"""Small vlmdata-shaped rows and datasets with real PNG images, for the vlmtrain tests."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

from vlmdata.schema import features, image_part, message, row_id, text_part

COLOURS = {"red": (220, 30, 30), "green": (30, 180, 60), "blue": (40, 60, 220), "yellow": (230, 210, 40)}


def png(*, colour: str, shape: str = "square", size: int = 48) -> bytes:
    """A real PNG: a coloured square or circle on a grey background."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (128, 128, 128))
    draw = ImageDraw.Draw(img)
    box = (size // 6, size // 6, size - size // 6, size - size // 6)
    (draw.ellipse if shape == "circle" else draw.rectangle)(box, fill=COLOURS[colour])
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def make_row(*, images: list[bytes], messages: list[dict[str, Any]], task: str = "vqa") -> dict[str, Any]:
    """A row that keeps the vlmdata contract (content id, embedded image bytes, JSON meta)."""
    hashes = [hashlib.sha256(b).hexdigest() for b in images]
    return {
        "id": row_id(image_hashes=hashes, messages=messages),
        "task": task,
        "source": "test",
        "images": [{"bytes": b, "path": None} for b in images],
        "messages": messages,
        "answers": [],
        "meta": json.dumps({"source": "test"}),
    }


def vqa_row(*, colour: str, question: str = "What colour is the square?", answer: str | None = None) -> dict[str, Any]:
    msgs = [
        message("user", [image_part(), text_part(question)]),
        message("assistant", [text_part(answer or colour)]),
    ]
    return make_row(images=[png(colour=colour)], messages=msgs)


def save_dataset(*, path: Path, splits: dict[str, list[dict[str, Any]]]) -> Path:
    """Save rows as a vlmdata output folder (DatasetDict via save_to_disk)."""
    import datasets

    dd = datasets.DatasetDict(
        {name: datasets.Dataset.from_list(rows, features=features()) for name, rows in splits.items()}
    )
    dd.save_to_disk(str(path))
    return path


def supervised_runs(labels: list[int]) -> list[list[int]]:
    """Contiguous stretches of supervised token ids (labels != -100), for decoding what a collator trains on."""
    runs: list[list[int]] = []
    previous = -100
    for token in labels:
        if token != -100:
            if previous == -100:
                runs.append([])
            runs[-1].append(token)
        previous = token
    return runs


# `python -c KILL_AFTER CONFIG N`: a FinetuneRecipe run SIGKILLed as step N begins (checkpoint-N is on disk,
# no cleanup runs): what a resume test starts from.
KILL_AFTER = """
import os, signal, sys
from transformers import TrainerCallback
from vlmtrain.config.train import load_train_config
from vlmtrain.recipes.finetune import FinetuneRecipe

class Kill(TrainerCallback):
    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == int(sys.argv[2]):  # checkpoint-N is on disk; die mid-run, no cleanup
            os.kill(os.getpid(), signal.SIGKILL)

recipe = FinetuneRecipe(config=load_train_config(sys.argv[1]))
recipe.setup()
recipe.trainer.add_callback(Kill())
recipe.train()
"""
