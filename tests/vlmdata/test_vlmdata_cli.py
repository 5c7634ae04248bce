"""The `vlmdata` command line through click's CliRunner, and a torch-free build in a fresh interpreter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from vlmdata_kit import Workspace

from vlmdata.cli import main


@pytest.fixture
def recipe(ws: Workspace) -> Path:
    for i in range(3):
        ws.image(f"imgs/{i}.png", seed=i)
    ws.jsonl("qa.jsonl", ["{oops"] + [{"image": f"{i}.png", "question": f"Question {i}?", "answers": ["yes"]}
                                       for i in range(3)])
    ws.jsonl("cap.jsonl", [{"image": f"{i}.png", "caption": f"caption {i}"} for i in range(2)])
    return ws.recipe({"name": "clitest", "output": {"path": "out/default"},
                      "instruct": {"vqa": {"suffix": "Short answer."}},
                      "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl", "image_root": "imgs"},
                                  {"name": "cap", "kind": "jsonl", "path": "cap.jsonl", "image_root": "imgs",
                                   "task": "caption"}]})


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_validate_ok(recipe: Path, ws: Workspace) -> None:
    code, out, _ = invoke("validate", recipe)
    assert code == 0
    assert out.startswith("ok: recipe 'clitest' (2 source(s), sha256 ")
    assert str(ws.root / "out/default") in out
    assert not (ws.root / "out").exists()


def test_validate_failing_prints_every_problem_and_exits_2(recipe: Path, ws: Workspace) -> None:
    code, out, err = invoke("validate", recipe, "--set", "sources[0].kind=jsnl", "--set", "sources[1].fields.imgae=x",
                            "--set", "seed=abc")
    assert code == 2 and out == ""
    assert err.startswith("3 problem(s) in recipe")
    assert "sources[0].kind: unknown kind 'jsnl'; did you mean 'jsonl'?" in err
    assert "sources[1].fields.imgae: unknown key 'imgae'; did you mean 'image'?" in err
    assert "seed: " in err


def test_build_of_an_invalid_recipe_writes_nothing(recipe: Path, ws: Workspace) -> None:
    code, _, err = invoke("build", recipe, "-o", ws.root / "never", "--set", "sources[0].path=missing.jsonl")
    assert code == 2 and "sources[0].path: path not found" in err
    assert not (ws.root / "never").exists() and not (ws.root / "out").exists()
    assert not [p for p in ws.root.iterdir() if p.name.startswith(".")]


def test_build_with_out_limit_set_and_quiet(recipe: Path, ws: Workspace) -> None:
    out_dir = ws.root / "custom"
    code, out, err = invoke("build", recipe, "-o", out_dir, "--limit", "2", "--set", "sources[1].task=describe",
                            "--set", "seed=4", "--quiet")
    assert code == 0, err
    assert "built 4 rows {'train': 4}" in out and str(out_dir) in out
    assert "rejected 1 rows (malformed_line: 1)" in out
    assert err == ""  # --quiet: no progress bars
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["limit"] == 2 and manifest["recipe"]["seed"] == 4
    assert manifest["tasks"] == {"describe": 2, "vqa": 2}
    assert not (ws.root / "out").exists()  # -o wins over output.path


def test_build_defaults_to_the_recipe_output_path(recipe: Path, ws: Workspace) -> None:
    code, out, _ = invoke("build", recipe, "-q")
    assert code == 0 and (ws.root / "out/default/manifest.json").is_file()
    assert "built 5 rows" in out


def test_inspect_counts_and_renders_rows(recipe: Path, ws: Workspace) -> None:
    assert invoke("build", recipe, "-q")[0] == 0
    built = ws.root / "out/default"
    code, out, _ = invoke("inspect", built, "-n", "1")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "clitest: 5 rows"
    assert "  splits: train=5" in lines
    assert "  tasks: caption=2, vqa=3" in lines
    assert "  sources: cap=2, qa=3" in lines
    assert "  rejects: malformed_line=1" in lines
    assert any(line.startswith("  [train] ") and "task=vqa source=qa images=1" in line for line in lines)
    assert "         user: <image> Question 0?\nShort answer.\n" in out
    assert "    assistant: yes" in out
    assert "answers: ['yes']" in out
    code, out, _ = invoke("inspect", built, "--json")
    assert json.loads(out) == {"splits": {"train": 5}, "tasks": {"caption": 2, "vqa": 3},
                               "sources": {"cap": 2, "qa": 3}, "rejects": {"malformed_line": 1}}


def test_cli_and_a_full_build_never_import_torch(recipe: Path, ws: Workspace) -> None:
    code = f"""
import sys
import vlmdata.cli
assert 'torch' not in sys.modules, 'import vlmdata.cli imported torch'
try:
    vlmdata.cli.main(['build', {str(recipe)!r}, '-o', {str(ws.root / 'sub')!r}, '-q'])
except SystemExit as e:
    assert e.code in (0, None), e.code
heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'torchvision'))
assert not heavy, heavy
print('no torch')
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no torch" in proc.stdout
    assert (ws.root / "sub/manifest.json").is_file()
