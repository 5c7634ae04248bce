"""Opening a vlmdata output for training, and checking it keeps the row contract.

Why a check: the collator reads `messages` and `images` by name; a dataset from elsewhere (or an old
vlmdata) should fail here, before a model loads, with the missing columns named, not deep inside a
batch as a KeyError.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from vlmdata.config.errors import ConfigError, Problem
from vlmdata.schema import COLUMNS
from vlmtrain.data.raw_sources import read_rows

if TYPE_CHECKING:  # pragma: no cover
    import datasets

    from vlmtrain.config.train import DataSection, SourceSpec


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
    """The `split` of the DatasetDict saved at `path` (or the single Dataset saved there), images as PIL."""
    import datasets

    try:
        loaded = datasets.load_from_disk(str(path))
    except (FileNotFoundError, NotADirectoryError, ValueError) as e:  # not a saved dataset (or no such folder)
        raise ConfigError([Problem("data.path", f"{path} is not a saved vlmdata dataset: {e}")], what="dataset") from None
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


def weighted_rows(*, n: int, weight: float, seed: int) -> list[int]:
    """Row indices for a source of `n` rows at `weight`: whole copies, then a seeded subset for the fraction.

    Why this and not sampling with replacement: weight 1.0 must mean "every row exactly once", and 2.0
    "every row twice", so a single-source run is the dataset itself and weights read as multipliers.
    """
    whole, frac = int(weight), weight - int(weight)
    extra = np.random.default_rng(seed).permutation(n)[: round(frac * n)]
    return [i for _ in range(whole) for i in range(n)] + sorted(int(i) for i in extra)


def read_source(*, source: SourceSpec, seed: int, rejects_to: Path | None = None) -> datasets.Dataset:
    """A raw source (`kind` set: a sharegpt file, a webdataset folder, ...) read by vlmdata into rows."""
    return read_rows(kind=str(source.kind), path=source.path, options=source.options, seed=seed,
                     base_dir=source._base_dir or source.path.parent, where="data.sources", rejects_to=rejects_to)


def open_sources(*, data: DataSection, seed: int, rejects_dir: Path | None = None) -> datasets.Dataset:
    """All of `data.sources` (or `data.path`) as one Dataset, each source repeated/subsampled by its weight.

    Rows keep their source order; the Trainer's sampler shuffles. Each source's subset is drawn with
    `seed + its index`, so adding a source does not change which rows the others contribute. A source
    with a `kind` is read through vlmdata first; its rejects go to `rejects_dir/rejects-<i>.jsonl`.
    """
    import datasets

    parts = []
    for i, source in enumerate(data.all_sources):
        if getattr(source, "kind", None) is not None:
            dataset = read_source(source=source, seed=seed,
                                  rejects_to=rejects_dir / f"rejects-{i}.jsonl" if rejects_dir else None)
        else:
            dataset = open_split(path=source.path, split=source.split)
        if source.weight != 1.0:
            dataset = dataset.select(weighted_rows(n=len(dataset), weight=source.weight, seed=seed + i))
        if len(dataset) == 0:
            raise ConfigError(
                [Problem(f"data.sources[{i}].weight", f"weight {source.weight} leaves no rows of {source.path}")],
                what="dataset",
            )
        dataset = dataset.select_columns([*COLUMNS, *(c for c in ("chosen", "rejected") if c in dataset.column_names)])
        if parts and dataset.features != parts[0].features:  # e.g. Sequence vs List from another version
            dataset = dataset.cast(parts[0].features)
        parts.append(dataset)
    return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)


def row_batches(dataset: datasets.Dataset, *, batch_size: int) -> Iterator[list[dict[str, Any]]]:
    """The dataset as lists of row dicts, `batch_size` at a time (one Arrow read per batch, not per row)."""
    for start in range(0, len(dataset), batch_size):
        batch = dataset[start : start + batch_size]
        yield [dict(zip(batch, values, strict=True)) for values in zip(*batch.values(), strict=True)]


def raw_batches(dataset: datasets.Dataset, *, batch_size: int) -> Iterator[list[dict[str, Any]]]:
    """Row dicts with images as {'bytes', 'path'} (read as Arrow, never decoded), so a broken image is a
    row's problem to report, not an exception while reading a batch; nothing is copied or cast."""
    arrow = dataset.with_format("arrow")
    for start in range(0, len(arrow), batch_size):
        yield arrow[start : start + batch_size].to_pylist()
