"""Opening a vlmdata output for training, and checking it keeps the row contract.

Why a check: the collator reads `messages` and `images` by name; a dataset from elsewhere (or an old
vlmdata) should fail here, before a model loads, with the missing columns named, not deep inside a
batch as a KeyError.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vlmdata.schema import COLUMNS
from vlmdata.validation import ConfigError, Problem

if TYPE_CHECKING:  # pragma: no cover
    import datasets


def check_columns(*, columns: list[str], where: str) -> None:
    """Raise ConfigError (at `data.path`) when any contract column is missing; extra columns are fine."""
    missing = [c for c in COLUMNS if c not in columns]
    if missing:
        raise ConfigError(
            [
                Problem(
                    "data.path",
                    f"{where} is not a vlmdata dataset: missing column(s) {', '.join(missing)} "
                    f"(has: {', '.join(columns)}; expected: {', '.join(COLUMNS)})",
                )
            ],
            what="dataset",
        )


def open_split(*, path: Path, split: str) -> datasets.Dataset:
    """The `split` of the DatasetDict saved at `path`, with images decoded to PIL on access."""
    import datasets

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ConfigError(
                [Problem("data.split", f"no split '{split}' in {path} (splits: {', '.join(loaded)})")], what="dataset"
            )
        dataset = loaded[split]
    else:
        dataset = loaded
    check_columns(columns=list(dataset.column_names), where=f"{path} [{split}]")
    if len(dataset) == 0:
        raise ConfigError([Problem("data.split", f"split '{split}' of {path} is empty")], what="dataset")
    return dataset
