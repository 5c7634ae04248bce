"""A seeded fuzzer over the shipped training configs: every mutant is either valid or a ConfigError of
named problems, never another exception; file-level breakage (not UTF-8, recursive aliases, malformed
--set) is a named problem from `vlmtrain validate`, never a traceback."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from vlmdata.config.errors import ConfigError
from vlmtrain.cli import main
from vlmtrain.config.train import validate_train_config

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "train"
VALUES: list[Any] = [None, "", "abc", -1, 0, 1, 1e9, 10**30, float("inf"), float("nan"), [], {}, [1, "a"], {"x": 1},
                     True, "~nouser_zz/x", "a" * 300, "a\x00b", 0.5, [None], {"path": None}, "all-linear", "q_prj"]


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out: list[tuple] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    for key, item in items:
        out.append((*prefix, key))
        out.extend(_paths(item, (*prefix, key)))
    return out


def mutate(doc: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """1-3 edits: a value replaced by an odd one, a key removed, or an unknown key added."""
    doc = copy.deepcopy(doc)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_paths(doc))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        roll = rng.random()
        if roll < 0.7 or not isinstance(parent, dict):
            parent[path[-1]] = copy.deepcopy(rng.choice(VALUES))
        elif roll < 0.85:
            parent.pop(path[-1])
        else:
            parent[f"{path[-1]}x"] = 1
    return doc


def test_mutants_of_shipped_configs_are_ok_or_named_problems(tiny_llava, colour_dataset, tmp_path):
    docs = []
    for path in sorted(RECIPES.glob("*.yaml")):
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        doc["model"] = {"path": str(tiny_llava)}
        doc["data"] = {**(doc.get("data") or {}), "path": str(colour_dataset)}
        doc["output"] = {"dir": str(tmp_path / "run")}
        docs.append(doc)
    rng = random.Random(12)
    outcomes = {"ok": 0, "problems": 0}
    for _ in range(400):
        doc = mutate(rng.choice(docs), rng)
        try:
            validate_train_config(doc, base_dir=tmp_path)
            outcomes["ok"] += 1
        except ConfigError as err:
            assert err.problems and all(p.message for p in err.problems)
            outcomes["problems"] += 1
        # any other exception fails the test with the mutant in the traceback
    assert outcomes["problems"] > 200 and outcomes["ok"] > 0, outcomes


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
