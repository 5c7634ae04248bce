"""A build appears under its final name only when complete: crashes leave nothing half-written behind."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from vlmdata_kit import Workspace

from vlmdata.output.writer import ArrowWriter


@pytest.fixture
def recipe(ws: Workspace) -> Path:
    for i in range(4):
        ws.image(f"imgs/{i}.png", seed=i)
    ws.jsonl("qa.jsonl", [{"image": f"{i}.png", "question": f"q{i}?", "answer": "a"} for i in range(4)])
    return ws.recipe({"name": "t", "batch_size": 1,
                      "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl", "image_root": "imgs"}]})


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def crash_on_call(monkeypatch: pytest.MonkeyPatch, cls: type, method: str, *, after: int,
                  exc: type[BaseException] = RuntimeError) -> None:
    import multiprocessing

    original = getattr(cls, method)
    calls = multiprocessing.Value("i", 0)  # shared with the engine's forked workers: one count for the build

    def wrapped(self, *args, **kwargs):
        with calls.get_lock():
            calls.value += 1
            n = calls.value
        if n > after:
            raise exc("simulated crash")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, wrapped)


def test_crash_mid_build_leaves_no_output_and_no_partial_folder(ws: Workspace, recipe: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # a step's own exception is a row's reject now (test_bad_inputs); the writer failing is the build's
    crash_on_call(monkeypatch, ArrowWriter, "write", after=2)  # two rows are already written
    with pytest.raises(RuntimeError, match="simulated crash"):
        ws.build(recipe, out="built/t")
    assert not (ws.root / "built/t").exists()
    assert leftovers(ws.root / "built") == []


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_crash_while_saving_keeps_the_previous_output_intact(ws: Workspace, recipe: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            exc: type[BaseException]) -> None:
    old = ws.build(recipe, out="built/t")
    before = {p.relative_to(old.path): p.read_bytes() for p in old.path.rglob("*") if p.is_file()}
    crash_on_call(monkeypatch, ArrowWriter, "finish", after=0, exc=exc)
    with pytest.raises(exc):
        ws.build(recipe, out="built/t", overrides=["seed=1"])
    after = {p.relative_to(old.path): p.read_bytes() for p in old.path.rglob("*") if p.is_file()}
    assert after == before
    assert leftovers(ws.root / "built") == []
    assert len(old.rows) == 4


def test_rebuild_replaces_the_output(ws: Workspace, recipe: Path) -> None:
    first = ws.build(recipe, out="built/t")
    (first.path / "stray.txt").write_text("from an older build")
    second = ws.build(recipe, out="built/t", limit=2)
    assert second.path == first.path
    assert not (second.path / "stray.txt").exists()
    assert len(second.rows) == 2 and second.manifest["limit"] == 2
    assert leftovers(ws.root / "built") == []


def test_stale_partial_of_a_dead_process_is_cleaned(ws: Workspace, recipe: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = ws.path(f"built/.t.partial-{dead.pid}")
    (stale / "train").mkdir(parents=True)
    (stale / "train" / "data.arrow").write_bytes(b"half")
    alive = ws.path(f"built/.t.partial-{os.getppid()}")  # another live build of the same name: left alone
    alive.mkdir()
    other = ws.path(f"built/.other.partial-{dead.pid}")  # another output's partial: not ours to clean
    other.mkdir()
    ws.build(recipe, out="built/t")
    assert not stale.exists()
    assert alive.exists() and other.exists()
    assert (ws.root / "built/t/manifest.json").is_file()
