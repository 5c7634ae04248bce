"""Opening datasets: the row contract is checked before any model loads."""

from __future__ import annotations

import pytest
from train_rows import save_dataset, vqa_row

from vlmdata.config.errors import ConfigError
from vlmdata.schema import COLUMNS
from vlmtrain.data.dataset import open_split


def test_open_split_returns_rows_with_decoded_images(colour_dataset):
    dataset = open_split(path=colour_dataset, split="train")
    assert list(dataset.column_names) == list(COLUMNS)
    row = dataset[0]
    assert row["images"][0].size == (48, 48)  # PIL, decoded by the datasets Image feature
    assert row["messages"][-1]["role"] == "assistant"


def test_missing_contract_columns_are_named(tmp_path):
    import datasets

    rows = [vqa_row(colour="red")]
    for row in rows:
        del row["answers"], row["meta"]
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(ConfigError, match=r"missing column\(s\) answers, meta") as err:
        open_split(path=tmp_path / "bad", split="train")
    assert err.value.problems[0].path == "data.path"


def test_unknown_split_is_named(tmp_path):
    save_dataset(path=tmp_path / "d", splits={"train": [vqa_row(colour="red")]})
    with pytest.raises(ConfigError, match="no split 'validation'.*splits: train"):
        open_split(path=tmp_path / "d", split="validation")
