"""Shared fixtures: one tiny LLaVA per session, and small vlmdata-shaped datasets with real PNG images."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from train_rows import COLOURS, save_dataset, vqa_row

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_llava(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random LLaVA + processor on disk, built once per session (offline)."""
    from vlmtrain.models.tiny.registry import write_tiny

    return write_tiny(out=tmp_path_factory.mktemp("tiny") / "llava", family="llava", seed=0)


@pytest.fixture(scope="session")
def llava_processor(tiny_llava: Path) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(tiny_llava))


@pytest.fixture(scope="session")
def colour_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four colour questions, repeated: small enough to memorise, so the loss must fall."""
    rows = [vqa_row(colour=c) for c in COLOURS] * 4
    val = [vqa_row(colour="red", question="Which colour?")]
    return save_dataset(path=tmp_path_factory.mktemp("data") / "colours", splits={"train": rows, "validation": val})


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    """Write a YAML config into the test's folder and return its path."""

    def write(text: str, name: str = "train.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
