"""manifest.json: what was built, from what, by which versions, and where every row went."""

from __future__ import annotations

import importlib.metadata
import json
import platform
from collections import Counter
from pathlib import Path
from typing import Any

from vlmdata.steps.base import StageStats

PACKAGES = ("vlmdata", "datasets", "pyarrow", "pillow", "pydicom", "jinja2", "pydantic", "numpy")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def build_manifest(
    *,
    name: str,
    recipe_path: Path,
    recipe_sha256: str,
    recipe: dict[str, Any],
    stages: list[StageStats],
    splits: dict[str, int],
    counts: dict[str, Counter[str]],
    wall_seconds: float,
    created: str,
    limit: int | None,
) -> dict[str, Any]:
    """`recipe` is the resolved recipe with its secrets already redacted (it is written as it is)."""
    rejects: Counter[str] = Counter()
    for st in stages:
        rejects.update(st.rejected)
    return {
        "name": name,
        "created": created,
        "recipe_path": str(recipe_path),
        "recipe_sha256": recipe_sha256,
        "recipe": recipe,
        "limit": limit,
        "versions": package_versions(),
        "stages": [st.to_json() for st in stages],
        "rejects": dict(sorted(rejects.items())),
        "rejected_total": sum(rejects.values()),
        "splits": splits,
        "tasks": dict(sorted(counts["task"].items())),
        "sources": dict(sorted(counts["source"].items())),
        "rows": sum(splits.values()),
        "wall_seconds": round(wall_seconds, 3),
    }


def write_manifest(path: Path, manifest: dict[str, Any]) -> None:
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_manifest(out_dir: Path) -> dict[str, Any]:
    return json.loads((out_dir / "manifest.json").read_text(encoding="utf-8"))
