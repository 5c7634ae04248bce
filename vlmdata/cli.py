"""`vlmdata` command line: build, validate, inspect.

Kept light on purpose: no torch, and `datasets`/`pyarrow` are imported only by the commands that
read or write data, so `vlmdata validate` answers at once.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from vlmdata import __version__
from vlmdata.validation import ConfigError


def _load(recipe: str, overrides: tuple[str, ...]):
    from vlmdata.recipe import load_recipe

    try:
        return load_recipe(recipe, overrides=list(overrides))
    except ConfigError as e:
        click.echo(str(e), err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vlmdata")
def main() -> None:
    """Build visual instruction datasets from a YAML recipe."""


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a recipe key.")
def validate(recipe: str, overrides: tuple[str, ...]) -> None:
    """Check RECIPE and list every problem at once (exit 2 if any). Reads and writes no data."""
    loaded = _load(recipe, overrides)
    r = loaded.recipe
    click.echo(f"ok: recipe '{r.name}' ({len(r.sources)} source(s), sha256 {loaded.sha256}) -> {r.output_path()}")


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("-o", "--out", type=click.Path(file_okay=False), default=None, help="Output folder (default: output.path).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Read at most N rows per source (a quick trial).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a recipe key, e.g. seed=1.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
def build(recipe: str, out: str | None, limit: int | None, overrides: tuple[str, ...], quiet: bool) -> None:
    """Build the dataset described by RECIPE."""
    from vlmdata.build import build as run_build

    loaded = _load(recipe, overrides)
    result = run_build(loaded, out=Path(out) if out else None, limit=limit, progress=not quiet)
    m = result.manifest
    rejected = m["rejected_total"]
    click.echo(f"built {m['rows']} rows {m['splits']} in {m['wall_seconds']} s -> {result.path}")
    if rejected:
        reasons = ", ".join(f"{k}: {v}" for k, v in m["rejects"].items())
        click.echo(f"rejected {rejected} rows ({reasons}); see {result.path / 'rejects.jsonl'}")


def _render_messages(messages: list[dict]) -> str:
    lines = []
    for m in messages:
        text = " ".join("<image>" if p["type"] == "image" else (p.get("text") or "") for p in m["content"])
        lines.append(f"    {m['role']:>9}: {text}")
    return "\n".join(lines)


@main.command()
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("-n", "--rows", "n_rows", default=3, show_default=True, help="Rows to render per split.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def inspect(out: str, n_rows: int, as_json: bool) -> None:
    """Counts per split, task and source of a built dataset OUT, and a few rendered rows."""
    import datasets

    from vlmdata.report.manifest import read_manifest

    path = Path(out)
    manifest = read_manifest(path) if (path / "manifest.json").is_file() else {}
    dd = datasets.load_from_disk(str(path))
    summary = {"splits": {k: len(v) for k, v in dd.items()}, "tasks": manifest.get("tasks"),
               "sources": manifest.get("sources"), "rejects": manifest.get("rejects")}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"{manifest.get('name', path.name)}: {sum(summary['splits'].values())} rows")
    for key in ("splits", "tasks", "sources", "rejects"):
        if summary[key]:
            click.echo(f"  {key}: " + ", ".join(f"{k}={v}" for k, v in summary[key].items()))
    for split, ds in dd.items():
        shown = ds.with_format("arrow")[: min(n_rows, len(ds))].to_pylist()  # no image decoding, no cache files
        for row in shown:
            click.echo(f"\n  [{split}] {row['id']} task={row['task']} source={row['source']} images={len(row['images'])}")
            click.echo(_render_messages(row["messages"]))
            if row["answers"]:
                click.echo(f"    answers: {row['answers'][:10]}")


if __name__ == "__main__":  # pragma: no cover
    main()
