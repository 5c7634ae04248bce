"""Raw vlmdata sources (`data.sources[].kind`: a sharegpt file, a webdataset folder, ...) checked and read
through the `vlmdata` command line, in a subprocess.

Why the command line: vlmtrain imports only vlmdata's row contract and config helpers (`vlmdata.schema`,
`answers`, `sampling`, `config.*`); reading a source kind is vlmdata's job, and its command line is the
public way to ask for it. The one-source recipe `{sources: [{kind, path, **options}]}` goes through the
same load and instruct steps a build runs (images verified, turns made, ids computed; no dedup, split or
mix). `vlmdata validate` (reads no data) checks it when the training config is validated;
`vlmdata build` reads it when the run starts. Relative paths in `options` resolve against the training
config's folder (`--base-dir`), as every other path of the config does. Bad rows are rejects, as in a
build: counted, and copied to `rejects_to` when given.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from vlmdata.config.errors import ConfigError, Problem

if TYPE_CHECKING:  # pragma: no cover
    import datasets

VLMDATA = [sys.executable, "-m", "vlmdata.cli"]  # the interpreter running vlmtrain, whatever PATH says


def source_recipe(*, kind: str, path: Path, options: dict[str, Any], seed: int) -> dict[str, Any]:
    """The vlmdata recipe that reads this one source into contract rows."""
    return {"name": "read", "seed": seed, "sources": [{"name": "data", **options, "kind": kind, "path": str(path)}],
            "output": {"report": False}}


def _vlmdata(*, command: str, recipe: dict[str, Any], base_dir: Path, folder: Path,
             args: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return subprocess.run([*VLMDATA, command, str(path), "--base-dir", str(base_dir), *args],
                          capture_output=True, text=True, check=False)


def _problems(stderr: str) -> list[Problem]:
    """The `  - PATH: MESSAGE` lines of a vlmdata ConfigError, each path relative to the source."""
    found = []
    for line in stderr.splitlines():
        if not line.startswith("  - "):
            continue
        where, _, message = line[4:].partition(": ")
        found.append(Problem(where.removeprefix("sources[0]").lstrip("."), message))
    return found or [Problem("", " ".join(stderr.split())[-600:] or "vlmdata could not check this source")]


def source_problems(*, kind: str, path: Path, options: dict[str, Any], base_dir: Path, seed: int = 0) -> list[Problem]:
    """What is wrong with this source (unknown kind, bad option, missing file), from `vlmdata validate`;
    each problem's path is relative to the source ('kind', 'path', 'tags.user_tag', or '')."""
    with tempfile.TemporaryDirectory(prefix="vlmtrain-source-") as tmp:
        done = _vlmdata(command="validate", recipe=source_recipe(kind=kind, path=path, options=options, seed=seed),
                        base_dir=base_dir, folder=Path(tmp))
    return [] if done.returncode == 0 else _problems(done.stderr)


def read_rows(*, kind: str, path: Path, options: dict[str, Any], base_dir: Path, seed: int,
              where: str, rejects_to: Path | None = None) -> datasets.Dataset:
    """All good rows of one source, in memory, from `vlmdata build`; a failed build is a ConfigError at `where`."""
    import datasets

    with tempfile.TemporaryDirectory(prefix="vlmtrain-source-") as tmp:
        out = Path(tmp) / "out"
        done = _vlmdata(command="build", recipe=source_recipe(kind=kind, path=path, options=options, seed=seed),
                        base_dir=base_dir, folder=Path(tmp), args=("--out", str(out), "--quiet"))
        if done.returncode != 0:
            detail = " ".join(done.stderr.split())[-600:]
            raise ConfigError([Problem(where, f"vlmdata could not read {kind} source {path}: {detail}")],
                              what="dataset")
        manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
        if rejects_to is not None and manifest["rejected_total"]:
            rejects_to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(out / "rejects.jsonl", rejects_to)
        loaded = datasets.load_from_disk(str(out), keep_in_memory=True)
        rows = loaded.get("train")
        if rows is None or len(rows) == 0:
            raise ConfigError([Problem(where, f"{kind} source {path} gave no rows (rejects: {manifest['rejects']})")],
                              what="dataset")
        return rows
