"""The one fuzzer of training configs: seeded mutants (tests/fuzz_kit.py: keys deleted, renamed or added,
odd values, broken YAML text, malformed --set) of every shipped config, pointed at a real tiny model and
dataset so that mutants reach the deep checks; each is either valid or a ConfigError of named problems,
never another exception. File-level breakage through `vlmtrain validate` is a named problem, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/: fuzz_kit
from fuzz_kit import _absolute, fuzz  # noqa: E402

from vlmdata.config.errors import ConfigError  # noqa: E402
from vlmtrain.cli import main  # noqa: E402
from vlmtrain.config.train import TrainConfig, load_train_config  # noqa: E402

RECIPES = Path(__file__).resolve().parents[3] / "recipes" / "train"
PER_CONFIG = 40


def _check(path: Path, overrides: list[str]) -> int:
    load_train_config(path, overrides=overrides)
    return 0


def test_mutants_of_shipped_configs_are_ok_or_named_problems(tiny_llava, colour_dataset, tmp_path):
    configs = []
    for path in sorted(RECIPES.glob("*.yaml")):
        doc = _absolute(yaml.safe_load(path.read_text(encoding="utf-8")), model=TrainConfig, folder=path.parent)
        doc["model"] = {"path": str(tiny_llava)}
        doc["data"] = {**(doc.get("data") or {}), "path": str(colour_dataset)}
        doc["output"] = {"dir": str(tmp_path / "run")}
        configs.append(tmp_path / path.name)
        configs[-1].write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    stats = fuzz(configs=configs, model=TrainConfig, check=_check, expected=ConfigError, per_config=PER_CONFIG,
                 seed=0, workdir=tmp_path / "mutants")
    assert stats.crashes == [], "\n".join(stats.crashes[:20])
    assert stats.mutants == PER_CONFIG * len(configs)
    assert stats.refused > stats.mutants // 2 and stats.ok > 0, stats.line()  # the mutations really break things


@pytest.mark.parametrize(("content", "args", "message"), [
    (b"name: t\xff\n", [], "not UTF-8"),
    (b"a: &x [*x]\nname: t\n", [], "recursive alias"),
    (None, ["--set", "=3"], "--set: "),
    (None, ["--set", "train.lr=["], "--set: "),
    (None, ["--set", "train.lr=.inf"], "train.lr: .inf is not a finite number"),
])
def test_broken_files_and_overrides_are_named_problems(tiny_llava, colour_dataset, tmp_path, content, args, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(content if content is not None else
                     f"name: t\nmodel: {{path: {tiny_llava}}}\ndata: {{path: {colour_dataset}}}\n".encode())
    result = CliRunner().invoke(main, ["validate", "--config-only", str(path), *args])
    assert result.exit_code == 2, result.output + repr(result.exception)
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert message in result.output and "Traceback" not in result.output, result.output
