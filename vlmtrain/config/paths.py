"""Path fields of the training config: resolved against the config file's folder, checked to exist.

Why their own module: every section with a path (data, eval, continual stages, output) uses these, and
none of those sections should import another section's module to get them.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationInfo

from vlmdata.config.errors import did_you_mean


def resolve_path(value: Path, info: ValidationInfo) -> Path:
    """Absolute path; relative ones are read against the config file's folder (`context['base_dir']`)."""
    text = str(value)
    if "\x00" in text:
        raise ValueError("a path cannot hold a NUL byte")
    long = next((part for part in value.parts if len(part.encode()) > 255), None)
    if long is not None or len(text.encode()) > 4095:
        raise ValueError(f"path too long for the file system ({'a name over 255 bytes' if long else 'over 4095 bytes'}"
                         f": {text[:40]}...)")
    try:
        value = value.expanduser()
    except RuntimeError:  # `~nouser/...`: no such user's home
        raise ValueError(f"cannot expand '{value}': no such user's home folder; write the path out") from None
    if value.is_absolute():
        return value
    base = (info.context or {}).get("base_dir")
    return (Path(base) / value).resolve() if base is not None else value.resolve()


def dataset_folder(value: Path | None, info: ValidationInfo) -> Path | None:
    """A `save_to_disk` folder: a DatasetDict (dataset_dict.json) or a single Dataset (state.json)."""
    if value is None:  # `data: {path: null}`: the section's own check says what is missing
        return None
    value = resolve_path(value, info)
    if not value.is_dir():
        raise ValueError(f"dataset folder not found: {value} (build it with `vlmdata build RECIPE`)")
    if not (value / "dataset_dict.json").is_file() and not (value / "state.json").is_file():
        raise ValueError(f"not a dataset saved with save_to_disk (no dataset_dict.json or state.json): {value}")
    return value


def known_split(value: str, info: ValidationInfo) -> str:
    """The split must exist in a DatasetDict; a single saved Dataset is its own split (`split` unused)."""
    folder = info.data.get("path")
    if folder is None or not (folder / "dataset_dict.json").is_file():  # path has its own problem, or a Dataset
        return value
    splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8")).get("splits", [])
    if value not in splits:
        raise ValueError(f"no split '{value}' in {folder}{did_you_mean(value, splits)} (splits: {', '.join(splits)})")
    return value


class EvalDataInfo:
    """A ValidationInfo stand-in whose `data['path']` is the eval section's `data` folder."""

    def __init__(self, info: ValidationInfo) -> None:
        self.data = {"path": info.data.get("data")}
