"""Where a build may write: only into a new folder, an empty one, or an earlier vlmdata dataset.

A build replaces its output folder whole (see `vlmdata.build`), so pointing `-o` at the wrong place
would delete whatever is there: `-o .` (the current folder), `output.path: ""` (the recipe's folder),
`-o out` (a folder holding other datasets). This module decides, before any work starts, whether a
folder may be replaced, by the marker only the writer creates: `manifest.json` with vlmdata's keys
next to `dataset_dict.json`. Anything else is refused with a named error and a suggestion; `--force`
never widens that, it only lets a build replace an earlier dataset of *another* recipe name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vlmdata.recipe import LoadedRecipe

MARKER_KEYS = ("name", "recipe_sha256", "stages", "splits")


class OutputError(Exception):
    """The output folder holds something a build must not replace; raised before any work."""


def dataset_marker(folder: Path) -> dict[str, Any] | None:
    """The manifest of an earlier vlmdata dataset in `folder`, or None when `folder` is not one."""
    try:
        if not (folder / "dataset_dict.json").is_file():
            return None
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or any(k not in manifest for k in MARKER_KEYS):
        return None
    return manifest


def _suggest(final: Path, name: str) -> str:
    return f"choose a folder of its own, e.g. -o {final / name} (or output.path: {final / name})"


def output_problem(final: Path, *, name: str, force: bool = False, protect: tuple[Path, ...] = ()) -> str | None:
    """Why a build of recipe `name` may not write to `final` (an absolute path), or None when it may.

    `protect`: folders that must survive (the recipe's folder, the current folder): `final` may be
    neither one of them nor a folder above one."""
    final = Path(os.path.abspath(final))
    if final.parent == final:
        return f"output {final} is the root of the file system; {_suggest(Path.cwd() / 'out', name)}"
    for keep in protect:
        keep = Path(os.path.abspath(keep))
        if keep == final or final in keep.parents:
            return (f"output {final} holds {keep} (the recipe's or the current folder); a build replaces its "
                    f"output folder whole, so it would be deleted; {_suggest(final, name)}")
    if not final.exists() and not final.is_symlink():
        return None
    if final.is_symlink() or not final.is_dir():
        return f"output {final} exists and is not a folder; {_suggest(final.parent, name)}"
    try:
        entries = [p.name for p in final.iterdir()]
    except OSError as e:
        return f"output {final} cannot be read ({e.strerror}); {_suggest(final.parent, name)}"
    if not entries:
        return None
    manifest = dataset_marker(final)
    if manifest is None:
        shown = ", ".join(sorted(entries)[:5]) + (", ..." if len(entries) > 5 else "")
        return (f"output {final} is not empty and is not a vlmdata dataset ({len(entries)} entries: {shown}); "
                f"a build never replaces what it did not write; {_suggest(final, name)}")
    if manifest.get("name") != name and not force:
        return (f"output {final} holds the dataset '{manifest.get('name')}' of another recipe; pass --force to "
                f"replace it, or {_suggest(final.parent, name)}")
    return None


def check_output(final: Path, *, name: str, force: bool = False, protect: tuple[Path, ...] = ()) -> None:
    """Raise OutputError when `output_problem` finds one."""
    problem = output_problem(final, name=name, force=force, protect=protect)
    if problem:
        raise OutputError(problem)


def check_destination(loaded: LoadedRecipe, out: Path | None, *, force: bool = False) -> Path:
    """The absolute output folder of a build of `loaded` (`-o`, else output.path, else out/NAME), or
    OutputError when a build must not replace it. Used by `build` and `validate` alike."""
    final = Path(os.path.abspath(out or loaded.recipe.output_path()))
    check_output(final, name=loaded.recipe.name, force=force, protect=(loaded.path.parent, Path.cwd()))
    return final
