"""Path types for recipe fields: relative paths resolve against the recipe's folder and must exist.

The folder comes from pydantic's validation context (`{"base_dir": ...}`), so a missing file is a
validation problem reported with every other one, before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, ValidationInfo


def resolve(value: str | Path, info: ValidationInfo | None) -> Path:
    base = Path((info.context or {}).get("base_dir", ".")) if info is not None else Path(".")
    p = Path(value).expanduser()
    return (p if p.is_absolute() else base / p).resolve()


def _existing(value: Any, info: ValidationInfo) -> Path:
    p = resolve(value, info)
    if not p.exists():
        raise ValueError(f"path not found: {p}")
    return p


def _existing_dir(value: Any, info: ValidationInfo) -> Path:
    p = resolve(value, info)
    if not p.is_dir():
        raise ValueError(f"folder not found: {p}" if not p.exists() else f"not a folder: {p}")
    return p


def _any_path(value: Any, info: ValidationInfo) -> Path:
    return resolve(value, info)


ExistingPath = Annotated[Path, AfterValidator(_existing)]
ExistingDir = Annotated[Path, AfterValidator(_existing_dir)]
OutputPath = Annotated[Path, AfterValidator(_any_path)]
