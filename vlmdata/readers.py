"""Read any vlmdata source straight into contract rows, for callers that skip `vlmdata build` (vlmtrain).

    rows = read_rows(kind="sharegpt", path=Path("data/mllm_demo.json"), options={"image_root": "data"})

It runs the one-source recipe `{sources: [{kind, path, **options}]}` through the same load and
instruct steps a build runs (images verified, turns made, ids computed; no dedup, split or mix) into
a temporary folder, and returns the rows in memory. Bad rows are rejects, as in a build: counted in
the returned dataset's `info.description`, and copied to `rejects_to` when given. `vlmdata build` stays
the recommended path (it keeps the dataset, its report and its rejects, and dedups and splits).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vlmdata.config.errors import ConfigError, Problem, problems_from_validation_error
from vlmdata.recipe import LoadedRecipe, Recipe

if TYPE_CHECKING:  # pragma: no cover
    import datasets


def _recipe(kind: str, path: Path, options: dict[str, Any], seed: int) -> dict[str, Any]:
    return {"name": "read", "seed": seed, "sources": [{"name": "data", **options, "kind": kind, "path": str(path)}],
            "output": {"report": False}}


def source_problems(*, kind: str, path: Path, options: dict[str, Any], seed: int = 0,
                    base_dir: Path | None = None) -> list[Problem]:
    """What is wrong with this source (unknown kind, bad option, missing file); each problem's path is
    relative to the source ('kind', 'path', 'tags.user_tag', or '' for the source as a whole).
    Relative paths in `options` resolve against `base_dir` (default: the folder of `path`)."""
    from pydantic import ValidationError

    raw = _recipe(kind, path, options, seed)
    try:
        Recipe.model_validate(raw, context={"base_dir": str(base_dir or path.parent), "seed": seed})
    except ValidationError as err:
        return [Problem(p.path.removeprefix("sources[0]").lstrip("."), p.message)
                for p in problems_from_validation_error(err, model=Recipe, data=raw)]
    return []


def read_rows(*, kind: str, path: Path, options: dict[str, Any] | None = None, seed: int = 0,
              base_dir: Path | None = None, rejects_to: Path | None = None) -> datasets.Dataset:
    """All good rows of one source as an in-memory `datasets.Dataset` in the row contract."""
    import datasets

    # here, not at the top: vlmtrain's config imports this module; the build brings pyarrow and the steps
    from vlmdata.build import build

    options = dict(options or {})
    problems = source_problems(kind=kind, path=path, options=options, seed=seed, base_dir=base_dir)
    if problems:
        raise ConfigError(problems, what=f"{kind} source {path}")
    raw = _recipe(kind, path, options, seed)
    recipe = Recipe.model_validate(raw, context={"base_dir": str(base_dir or path.parent), "seed": seed})
    tmp = Path(tempfile.mkdtemp(prefix="vlmdata-read-"))
    try:
        loaded = LoadedRecipe(recipe=recipe, path=tmp / "recipe.yaml", raw=raw, sha256="read")
        result = build(loaded, out=tmp / "out", progress=False)
        if rejects_to is not None and result.manifest["rejected_total"]:
            rejects_to.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(result.path / "rejects.jsonl", rejects_to)
        split = datasets.load_from_disk(str(result.path), keep_in_memory=True)["train"]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    split.info.description = json.dumps({"rows": result.manifest["rows"], "rejects": result.manifest["rejects"]})
    return split
