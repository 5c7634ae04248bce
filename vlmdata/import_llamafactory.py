"""`vlmdata import-llamafactory data/dataset_info.json`: LLaMA-Factory's dataset registry → a recipe.

Each entry the `sharegpt` source can read becomes one source line
(`{name, kind: sharegpt, dataset_info, dataset}`), so the registry stays the one place that knows the
file names, columns and tags. Entries it cannot read (alpaca, hub, preference) are listed as comments
with the reason, never dropped silently.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import yaml

from vlmdata.sources.sharegpt import entry_problem, read_registry


def recipe_from_registry(info_path: Path, *, name: str, recipe_dir: Path) -> str:
    """The text of a recipe reading every usable entry of `info_path` (paths relative to `recipe_dir`)."""
    info = read_registry(info_path)
    rel = Path(os.path.relpath(info_path.resolve(), recipe_dir.resolve())).as_posix()
    sources, skipped = [], []
    for entry_name, entry in info.items():
        problem = entry_problem(entry_name, entry, folder=info_path.parent)
        if problem:
            skipped.append(problem)
            continue
        if entry.get("num_samples"):
            skipped.append(f"entry '{entry_name}': num_samples={entry['num_samples']} is not applied (add limit: "
                           "or a mix: section to sample)")
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", entry_name)
        sources.append({"name": safe, "kind": "sharegpt", "dataset_info": rel, "dataset": entry_name})
    header = [f"# vlmdata build {name}.yaml  (made by vlmdata import-llamafactory {info_path.name})"]
    header += [f"# note: {p}" for p in skipped]
    if not sources:
        raise ValueError(f"no entry of {info_path} can be read by the sharegpt source:\n  " + "\n  ".join(skipped))
    body = yaml.safe_dump({"name": name, "sources": sources}, sort_keys=False, allow_unicode=True,
                          default_flow_style=None, width=140)
    return "\n".join(header) + "\n" + body
