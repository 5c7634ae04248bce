"""`vlmdata validate` on each known gap: exit 2, every problem at once with its YAML path, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from vlmdata_kit import Workspace

from vlmdata.cli import main


def _validate(ws: Workspace, text: str | bytes | dict[str, Any], *, sets: tuple[str, ...] = ()) -> tuple[int, str]:
    body = yaml.safe_dump(text, sort_keys=False) if isinstance(text, dict) else text
    path = ws.root / "r.yaml"
    (path.write_bytes if isinstance(body, bytes) else path.write_text)(body)
    args = ["validate", str(path)] + [x for s in sets for x in ("--set", s)]
    result = CliRunner().invoke(main, args)
    out = result.output  # stdout and stderr together
    assert "Traceback" not in out and not (result.exception and not isinstance(result.exception, SystemExit)), out
    return result.exit_code, out


@pytest.fixture
def good(ws: Workspace) -> dict[str, Any]:
    ws.image("imgs/a.png", seed=1)
    ws.jsonl("qa.jsonl", [{"image": "imgs/a.png", "question": "What?", "answers": ["a"]}])
    (ws.root / "folder").mkdir()
    (ws.root / "notdata").mkdir()
    (ws.root / "notdata" / "notes.txt").write_text("not a dataset")
    return {"name": "t", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl"}]}


def test_the_good_recipe_is_ok(ws: Workspace, good: dict[str, Any]) -> None:
    code, out = _validate(ws, good)
    assert code == 0 and out.startswith("ok:")


@pytest.mark.parametrize(("patch", "where", "says"), [
    ({"sources": [{"name": "qa", "kind": "jsonl", "path": "~nouser_vlm/qa.jsonl"}]}, "sources[0].path", "not a user"),
    ({"sources": [{"name": "qa", "kind": "jsonl", "path": "p" * 300}]}, "sources[0].path", "255"),
    ({"name": "n" * 300}, "name", "128"),
    ({"output": {"path": "o" * 260}}, "output.path", "255"),
    ({"output": {"max_shard_size": "abc"}}, "output.max_shard_size", "not a size"),
    ({"sources": [{"name": "qa", "kind": "jsonl", "path": "folder"}]}, "sources[0].path", "is a folder"),
    ({"dedup": {"against": ["notdata"]}}, "dedup.against[0]", "neither a saved dataset"),
    ({"mix": {"total": 10**9}}, "mix.total", "too large"),
    ({"sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl", "limit": 5 * 10**9}]}, "sources[0].limit",
     "too large"),
    ({"engine": {"kind": "local", "workers": 100000}}, "engine.workers", "less than or equal"),
    ({"mix": {"temperature": float("inf")}}, "mix.temperature", "finite"),
    ({"mix": {"weights": {"vqa": float("nan")}}}, "mix.weights.vqa", "finite"),
    ({"filter": [{"custom": {"cls": "x:Y", "args": {"t": float("inf")}}}]}, "filter[0].custom.args.t", "finite"),
    ({"sources": [{"name": "qa", "kind": "jsnl", "path": "qa.jsonl"}]}, "sources[0].kind", "did you mean 'jsonl'"),
    ({"sources": [{"name": "qa", "kimd": "jsonl", "path": "qa.jsonl"}]}, "sources[0].kind", "misspelt as 'kimd'"),
])
def test_each_gap_is_a_named_problem(ws: Workspace, good: dict[str, Any], patch: dict[str, Any], where: str,
                                     says: str) -> None:
    code, out = _validate(ws, {**good, **patch})
    assert code == 2, out
    line = next((ln for ln in out.splitlines() if ln.strip().startswith(f"- {where}:")), None)
    assert line is not None and says in line, out


def test_file_level_problems(ws: Workspace, good: dict[str, Any]) -> None:
    text = yaml.safe_dump(good, sort_keys=False)
    code, out = _validate(ws, text + "seed: 1\nseed: 2\n")
    assert code == 2 and "- seed: duplicate key 'seed'" in out
    code, out = _validate(ws, text + "loop: &x [*x]\n")
    assert code == 2 and "- loop" in out and "recursive alias" in out
    code, out = _validate(ws, text.encode() + b"description: caf\xe9\n")
    assert code == 2 and "not UTF-8" in out and "line" in out
    bomb = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 8))
    code, out = _validate(ws, text + "l0: &l0 [x, x, x, x, x, x, x, x, x]\n" + bomb)
    assert code == 2 and "aliases" in out
    code, out = _validate(ws, text + "name: [\n")
    assert code == 2 and "not valid YAML" in out


@pytest.mark.parametrize("bad", ["=1", "a..b=1", "seed=[1", "seed={a: 1", "[0]=x", "sources[9].path=x",
                                 "sources.0.kind.deeper=1", "seed=&a [*a]", "name"])
def test_malformed_set_is_named(ws: Workspace, good: dict[str, Any], bad: str) -> None:
    code, out = _validate(ws, good, sets=(bad,))
    assert code == 2 and "- --set:" in out, out


def test_an_unset_variable_is_reported_with_the_rest(ws: Workspace, good: dict[str, Any]) -> None:
    recipe = {**good, "seed": "abc", "sources": [{"name": "qa", "kind": "jsonl", "path": "${VLM_UNSET_PATH_X}"}],
              "output": {"max_shard_size": "huge"}}
    code, out = _validate(ws, recipe)
    assert code == 2
    assert "- sources[0].path: environment variable ${VLM_UNSET_PATH_X} is not set" in out
    assert "- seed:" in out and "- output.max_shard_size:" in out
    assert out.count("sources[0].path") == 1  # not also "path not found: ${VLM_UNSET_PATH_X}"


def test_ok_means_the_writer_accepts_the_shard_size(ws: Workspace, good: dict[str, Any]) -> None:
    from datasets.utils.py_utils import convert_file_size_to_int

    from vlmdata.recipe import load_recipe

    for size, expected in (("64MB", 64 * 10**6), ("1 GiB", 2**30), (4096, 4096)):
        path = ws.recipe({**good, "output": {"max_shard_size": size}}, rel=f"s{expected}.yaml")
        assert convert_file_size_to_int(load_recipe(Path(path)).recipe.output.max_shard_size) == expected


def test_a_duplicate_key_is_reported_with_the_other_problems(ws: Workspace, good: dict[str, Any]) -> None:
    text = yaml.safe_dump({**good, "seed": "abc"}, sort_keys=False)
    code, out = _validate(ws, text + "name: again\n")
    assert code == 2 and "- name: duplicate key 'name'" in out and "- seed:" in out


@pytest.mark.parametrize("ref", ["t" * 300, "~nouser_vlm/t.j2", "a\x00b.j2"])
def test_an_impossible_template_name_is_a_problem(ws: Workspace, good: dict[str, Any], ref: str) -> None:
    code, out = _validate(ws, {**good, "instruct": {"vqa": {"template": ref}}})
    assert code == 2 and "- instruct.vqa.template:" in out, out
