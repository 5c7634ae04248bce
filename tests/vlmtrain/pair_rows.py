"""Preference rows (the vlmdata contract) with real PNG images, for the DPO tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from train_rows import COLOURS, png

from vlmdata.schema import PREFERENCE_TASK, features, image_part, message, preference_row_id, text_part


def pair_row(*, colour: str, wrong: str, question: str = "What colour is the square?") -> dict[str, Any]:
    blob = png(colour=colour)
    prompt = [message("user", [image_part(), text_part(question)])]
    chosen, rejected = [message("assistant", [text_part(colour)])], [message("assistant", [text_part(wrong)])]
    return {
        "id": preference_row_id(image_hashes=[hashlib.sha256(blob).hexdigest()], prompt=prompt, chosen=chosen,
                                rejected=rejected),
        "task": PREFERENCE_TASK, "source": "test", "images": [{"bytes": blob, "path": None}],
        "messages": prompt, "answers": [colour], "meta": json.dumps({"source": "test"}),
        "chosen": chosen, "rejected": rejected,
    }


def colour_pairs() -> list[dict[str, Any]]:
    names = list(COLOURS)
    return [pair_row(colour=c, wrong=names[(i + 1) % len(names)]) for i, c in enumerate(names)]


def save_pairs(*, path: Path, splits: dict[str, list[dict[str, Any]]]) -> Path:
    import datasets

    datasets.DatasetDict({name: datasets.Dataset.from_list(rows, features=features(preference=True))
                          for name, rows in splits.items()}).save_to_disk(str(path))
    return path
