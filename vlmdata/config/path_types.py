"""Path types for recipe fields: relative paths resolve against the recipe's folder and must exist.

The folder comes from pydantic's validation context (`{"base_dir": ...}`), so a missing file is a
validation problem reported with every other one, before any work starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, ValidationInfo

MAX_PATH, MAX_NAME = 4096, 255  # PATH_MAX and NAME_MAX (Linux, macOS): longer paths are an OSError


def resolve(value: str | Path, info: ValidationInfo | None) -> Path:
    """The absolute path, or a ValueError that says what is wrong with it (a validation problem)."""
    base = Path((info.context or {}).get("base_dir", ".")) if info is not None else Path(".")
    text = str(value)
    if not text.strip():
        raise ValueError("empty path")
    if "\x00" in text:
        raise ValueError("the path contains a NUL byte")
    try:
        p = Path(text).expanduser()
    except RuntimeError:
        user = text[1:].split("/", 1)[0]
        raise ValueError(f"'~{user}' is not a user on this machine (write the full path)") from None
    p = (p if p.is_absolute() else base / p).resolve()
    long_part = next((part for part in p.parts if len(part.encode()) > MAX_NAME), None)
    if long_part is not None:
        raise ValueError(f"a name in the path is {len(long_part.encode())} bytes long; the file system allows "
                         f"{MAX_NAME}: '{long_part[:40]}...'")
    if len(str(p).encode()) > MAX_PATH:
        raise ValueError(f"the path is {len(str(p).encode())} bytes long; the file system allows {MAX_PATH}")
    return p


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except OSError:
        return False


def _existing(value: Any, info: ValidationInfo) -> Path:
    p = resolve(value, info)
    if not _exists(p):
        raise ValueError(f"path not found: {p}")
    return p


def _existing_file(value: Any, info: ValidationInfo) -> Path:
    p = resolve(value, info)
    if not _exists(p):
        raise ValueError(f"path not found: {p}")
    if not p.is_file():
        raise ValueError(f"{p} is a folder; this key takes a file")
    return p


def _existing_dir(value: Any, info: ValidationInfo) -> Path:
    p = resolve(value, info)
    if not p.is_dir():
        raise ValueError(f"folder not found: {p}" if not _exists(p) else f"not a folder: {p}")
    return p


def _any_path(value: Any, info: ValidationInfo) -> Path:
    return resolve(value, info)


ExistingPath = Annotated[Path, AfterValidator(_existing)]
ExistingFile = Annotated[Path, AfterValidator(_existing_file)]
ExistingDir = Annotated[Path, AfterValidator(_existing_dir)]
OutputPath = Annotated[Path, AfterValidator(_any_path)]
