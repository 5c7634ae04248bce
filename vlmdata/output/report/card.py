"""The dataset card (README.md in the output): what a reader needs before using the data."""

from __future__ import annotations

from typing import Any

TASK_CATEGORIES = {"vqa": "visual-question-answering", "caption": "image-to-text", "report": "image-to-text"}


def _table(header: tuple[str, str], rows: dict[str, Any]) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows.items()]
    return "\n".join(lines)


def render_card(manifest: dict[str, Any]) -> str:
    recipe = manifest["recipe"]
    cats = sorted({TASK_CATEGORIES.get(t, "image-text-to-text") for t in manifest["tasks"]})
    front = ["---", f"pretty_name: {manifest['name']}", f"license: {recipe.get('license') or 'other'}",
             "task_categories:", *[f"  - {c}" for c in cats], "tags:", "  - vlmdata", "  - visual-instruction-tuning", "---"]
    sources = "\n".join(f"- `{s['name']}` ({s['kind']}, task `{s['task']}`): `{s.get('path')}`" for s in recipe["sources"])
    funnel = "\n".join(
        ["| stage | in | out | rejected |", "|---|---|---|---|"]
        + [f"| {st['stage']} | {st['in']} | {st['out']} | {sum(st['rejected'].values())} |" for st in manifest["stages"]]
    )
    rejects = _table(("reason", "rows"), manifest["rejects"]) if manifest["rejects"] else "No row was rejected."
    return "\n".join([
        *front,
        "",
        f"# {manifest['name']}",
        "",
        recipe.get("description") or "A visual instruction dataset built with vlmdata.",
        "",
        "## Load it",
        "",
        "```python",
        "from datasets import load_from_disk",
        f'ds = load_from_disk("{manifest["name"]}")  # the folder holding this card',
        "```",
        "",
        "Rows follow the vlmdata row contract: `id` (content hash), `task`, `source`, `images` (embedded),",
        "`messages` (the HF/TRL chat format with `{\"type\": \"image\"}` parts), `answers` (references for scoring)",
        "and `meta` (JSON lineage: source file and row, recipe hash, template).",
        "",
        "## Contents",
        "",
        _table(("split", "rows"), manifest["splits"]),
        "",
        _table(("task", "rows"), manifest["tasks"]),
        "",
        _table(("source", "rows"), manifest["sources"]),
        "",
        "## Sources",
        "",
        sources,
        "",
        "## How it was built",
        "",
        f"Recipe `{manifest['recipe_path']}` (sha256 `{manifest['recipe_sha256']}`), seed {recipe['seed']}, "
        f"built {manifest['created']} in {manifest['wall_seconds']} s with vlmdata {manifest['versions']['vlmdata']}.",
        "",
        funnel,
        "",
        "### Rejected rows",
        "",
        rejects,
        "",
        "Every rejected row is listed with its reason in `rejects.jsonl`; the full resolved recipe and package",
        "versions are in `manifest.json`.",
        "",
    ])
