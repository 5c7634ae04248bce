"""Tiny models of every family, built once per test session (offline) and shared by the test files."""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path


@functools.cache
def tiny_dir(family: str) -> Path:
    """A folder with the tiny `family` model + processor (seed 0), written on first use."""
    from vlmtrain.models.tiny.registry import write_tiny

    return write_tiny(out=Path(tempfile.mkdtemp(prefix=f"vlmtrain-{family}-")) / family, family=family, seed=0)


def config_text(*, model: Path, data: Path, out: Path, body: str) -> str:
    """A training YAML for `model` on `data`, writing to `out`, plus `body` (extra sections)."""
    return f"name: t\nseed: 0\nmodel: {{path: {model}}}\ndata: {{path: {data}, max_length: 128}}\noutput: {{dir: {out}}}\n{body}"
