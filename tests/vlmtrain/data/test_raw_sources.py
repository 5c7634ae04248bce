"""`data.sources` entries with a `kind`: a sharegpt file or a webdataset folder trains without a build first."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from train_rows import COLOURS, png

from vlmdata.config.errors import ConfigError
from vlmtrain.config.train import validate_train_config
from vlmtrain.data.dataset import open_sources


def _sharegpt(folder: Path, *, broken: bool = True) -> Path:
    (folder / "imgs").mkdir(parents=True, exist_ok=True)
    rows = []
    for colour in COLOURS:
        (folder / "imgs" / f"{colour}.png").write_bytes(png(colour=colour))
        rows.append({"messages": [{"role": "user", "content": "<image>What colour is the square?"},
                                  {"role": "assistant", "content": colour}], "images": [f"imgs/{colour}.png"]})
    if broken:
        rows.append({"messages": [{"role": "user", "content": None}, {"role": "assistant", "content": "x"}]})
    path = folder / "chat.json"
    path.write_text(json.dumps(rows))
    return path


def _config(tmp_path: Path, sources: list[dict], model: Path | None = None) -> dict:
    return {"name": "raw", "model": {"path": str(model or tmp_path)}, "data": {"sources": sources, "max_length": 64},
            "output": {"dir": str(tmp_path / "run")}}


def test_bad_raw_sources_are_config_errors_with_their_yaml_path(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    chat = _sharegpt(tmp_path)
    with pytest.raises(ConfigError) as err:
        validate_train_config(_config(tmp_path, [{"kind": "sharegtp", "path": str(chat)},
                                                 {"kind": "sharegpt", "path": str(chat), "options": {"tagz": {}}},
                                                 {"path": str(chat), "options": {"image_root": "."}}]),
                              base_dir=tmp_path)
    text = str(err.value)
    assert "data.sources[0]" in text and "did you mean 'sharegpt'" in text
    assert "data.sources[1]" in text and "options.tagz" in text and "did you mean 'tags'" in text
    assert "data.sources[2]" in text


def test_sharegpt_file_and_webdataset_folder_read_as_rows(tmp_path: Path) -> None:
    from vlmdata.build import build
    from vlmdata.output.export.formats import export
    from vlmdata.recipe import load_recipe

    (tmp_path / "config.json").write_text("{}")
    chat = _sharegpt(tmp_path / "src")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: c\nsources: [{{name: c, kind: sharegpt, path: {chat}}}]\n")
    built = build(load_recipe(recipe), out=tmp_path / "built", progress=False)
    export(built.path, fmt="webdataset", dest=tmp_path / "wds", shard_size=2)
    cfg = validate_train_config(_config(tmp_path, [{"kind": "sharegpt", "path": "src/chat.json"},
                                                   {"kind": "webdataset", "path": "wds", "weight": 2.0},
                                                   {"path": str(built.path)}]), base_dir=tmp_path)
    dataset = open_sources(data=cfg.data, seed=0, rejects_dir=tmp_path / "rej")
    import datasets

    ids = sorted(datasets.load_from_disk(str(built.path))["train"]["id"])
    assert len(dataset) == 4 * 4
    assert sorted(dataset["id"]) == sorted(ids * 4)  # sharegpt once, webdataset twice, the build once
    assert dataset[0]["images"][0].size == (48, 48)
    (rej,) = [json.loads(x) for x in (tmp_path / "rej" / "rejects-0.jsonl").read_text().splitlines()]
    assert rej["reason"] == "missing_content"


@pytest.mark.slow
def test_vlmtrain_run_trains_on_a_sharegpt_file(tiny_llava: Path, tmp_path: Path) -> None:
    import yaml

    from vlmtrain.cli import main

    _sharegpt(tmp_path / "src")
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "name": "raw", "seed": 0, "model": {"path": str(tiny_llava)},
        "data": {"sources": [{"kind": "sharegpt", "path": "src/chat.json"}], "max_length": 64},
        "train": {"steps": 3, "batch_size": 2, "device": "cpu"}, "output": {"dir": "run"}}))
    result = CliRunner().invoke(main, ["run", str(config)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    assert "sharegpt (read by vlmdata)" in result.output
    log = [json.loads(x) for x in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert (tmp_path / "run" / "data" / "rejects-0.jsonl").is_file()
