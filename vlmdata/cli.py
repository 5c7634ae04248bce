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
from vlmdata.config.errors import ConfigError
from vlmdata.import_llamafactory import recipe_from_registry
from vlmdata.medical.deid import DeidentificationError
from vlmdata.output.export.formats import export as run_export
from vlmdata.output.guard import OutputError, check_destination
from vlmdata.output.report.domains import context_lines
from vlmdata.output.report.manifest import read_manifest
from vlmdata.recipe import load_recipe
from vlmdata.reject_budget import RejectBudgetExceeded, unknown_stages
from vlmdata.rows import BuildError
from vlmdata.steps.mix import mix_table
from vlmdata.steps.split import SplitStep, describe_split
from vlmdata.synth.client import SynthError
from vlmdata.synth.planner import describe, plan_synthesis


def _load(recipe: str, overrides: tuple[str, ...], base_dir: str | None = None):
    try:
        return load_recipe(recipe, overrides=list(overrides), base_dir=Path(base_dir).resolve() if base_dir else None)
    except ConfigError as e:
        click.echo(str(e), err=True)
        sys.exit(2)
    except Exception as e:  # noqa: BLE001 - a bug in validation must still not print a traceback at the user
        click.echo(f"1 problem(s) in recipe {recipe}:\n  - vlmdata could not check this recipe "
                   f"({type(e).__name__}: {e}); this is a bug in vlmdata, please report it with the recipe",
                   err=True)
        sys.exit(2)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="vlmdata")
def main() -> None:
    """Build visual instruction datasets from a YAML recipe."""


def _output_problems(loaded, out: str | None, force: bool) -> list[str]:
    """Where the build would write, checked as `build` checks it (output_guard), plus max_reject_ratio keys."""
    # here, not at the top: the steps bring numpy, which `vlmdata --help` does without
    from vlmdata.plan import make_plan

    problems = []
    try:
        check_destination(loaded, Path(out) if out else None, force=force)
    except OutputError as e:
        problems.append(f"{'-o' if out else 'output.path'}: {e}")
    problems += unknown_stages(loaded.recipe.max_reject_ratio, make_plan(loaded).steps)
    return problems


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a recipe key.")
@click.option("-o", "--out", type=click.Path(), default=None, help="Check this output folder (as build -o).")
@click.option("--force", is_flag=True, help="As build --force.")
@click.option("--base-dir", type=click.Path(file_okay=False), default=None,
              help="Resolve the recipe's relative paths against this folder instead of the recipe's own.")
def validate(recipe: str, overrides: tuple[str, ...], out: str | None, force: bool, base_dir: str | None) -> None:
    """Check RECIPE and list every problem at once (exit 2 if any). Reads and writes no data."""
    loaded = _load(recipe, overrides, base_dir)
    r = loaded.recipe
    problems = _output_problems(loaded, out, force)
    if problems:
        click.echo(f"{len(problems)} problem(s) in recipe {recipe}:", err=True)
        for line in problems:
            click.echo(f"  - {line}", err=True)
        sys.exit(2)
    click.echo(f"ok: recipe '{r.name}' ({len(r.sources)} source(s), sha256 {loaded.sha256}) -> {r.output_path()}")


@main.command()
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("-o", "--out", type=click.Path(), default=None,
              help="Output folder (default: output.path). Only a new or empty folder or an earlier vlmdata dataset.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Read at most N rows per source (a quick trial).")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a recipe key, e.g. seed=1.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars.")
@click.option("--cache", "cache", type=click.Path(file_okay=False), default=None,
              help="Synthesis cache folder (default: OUT/../.vlmdata-cache).")
@click.option("--engine", type=click.Choice(["local", "ray"]), default=None,
              help="Where the steps run (default: the recipe's engine.kind, else local). Same output either way.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Local engine: processes for per-row steps (default: engine.workers, else min(4, CPUs)).")
@click.option("--force", is_flag=True,
              help="Replace an earlier vlmdata dataset of another recipe. Nothing else is ever replaced.")
@click.option("--base-dir", type=click.Path(file_okay=False), default=None,
              help="Resolve the recipe's relative paths against this folder instead of the recipe's own.")
def build(recipe: str, out: str | None, limit: int | None, overrides: tuple[str, ...], quiet: bool,
          cache: str | None, engine: str | None, workers: int | None, force: bool, base_dir: str | None) -> None:
    """Build the dataset described by RECIPE."""
    # here, not at the top: the build brings datasets and pyarrow, which `vlmdata validate` does without
    from vlmdata.build import Terminated
    from vlmdata.build import build as run_build

    loaded = _load(recipe, overrides, base_dir)
    try:
        result = run_build(loaded, out=Path(out) if out else None, limit=limit, progress=not quiet,
                           cache_dir=Path(cache) if cache else None, engine=engine, workers=workers, force=force)
    except RejectBudgetExceeded as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(1)
    except (SynthError, DeidentificationError, OutputError, BuildError) as e:  # the build's, not a row's
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except Terminated:
        click.echo("terminated (SIGTERM): nothing was written; the partial output was removed", err=True)
        sys.exit(143)
    m = result.manifest
    rejected = m["rejected_total"]
    click.echo(f"built {m['rows']} rows {m['splits']} in {m['wall_seconds']} s -> {result.path}")
    if rejected:
        reasons = ", ".join(f"{k}: {v}" for k, v in m["rejects"].items())
        click.echo(f"rejected {rejected} rows ({reasons}); see {result.path / 'rejects.jsonl'}")
    if "deidentification" in m:
        click.echo(f"de-identification: {m['deidentification']['summary']}")
    for warning in m.get("warnings", []):
        click.echo(f"warning: {warning['message']}", err=True)


@main.command("plan")
@click.argument("recipe", type=click.Path(dir_okay=False))
@click.option("--show", default=2, show_default=True, help="Prompts to render per synthesis job.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Read at most N rows per source.")
@click.option("--cache", "cache", type=click.Path(file_okay=False), default=None, help="Synthesis cache folder.")
@click.option("--set", "overrides", multiple=True, metavar="KEY.PATH=VALUE", help="Override a recipe key.")
def plan_cmd(recipe: str, show: int, limit: int | None, cache: str | None, overrides: tuple[str, ...]) -> None:
    """Show the steps, render the first synthesis prompts, count requests and tokens, estimate the cost.

    Sends nothing and needs no API key."""
    from vlmdata.plan import make_plan  # here, not at the top: the steps bring numpy

    loaded = _load(recipe, overrides)
    for line in make_plan(loaded).describe():
        click.echo(line)
    from vlmdata.synth.judge_plan import plan_judge  # here, like plan: it renders prompts from rows (numpy)

    judge = plan_judge(loaded, show=show, limit=limit)  # preference: from: judge (its two request jobs)
    if loaded.recipe.synthesize or judge:
        plans = plan_synthesis(loaded, show=show, limit=limit, cache_dir=Path(cache) if cache else None)
        for line in describe(plans + judge):
            click.echo(line)


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
    for stage in manifest.get("stages", []):  # the split check and the mix table (n_i, p_i, final rows)
        d = stage.get("details") or {}
        if stage["stage"] == SplitStep.name and d:
            click.echo(f"  split: {describe_split(d)}")
    mix = mix_table(manifest)
    if mix is not None:
        click.echo(f"  mix by {mix.by} (T={mix.temperature}, total={mix.total}):")
        for g in mix.groups:
            click.echo(f"    {g.group}: n={g.n} p={g.p:.4f} rows={g.rows}")
        if mix.note:
            click.echo(f"    note: {mix.note}")
    for split, ds in dd.items():
        shown = ds.with_format("arrow")[: min(n_rows, len(ds))].to_pylist()  # no image decoding, no cache files
        for row in shown:
            click.echo(f"\n  [{split}] {row['id']} task={row['task']} source={row['source']} images={len(row['images'])}")
            for line in context_lines(json.loads(row["meta"] or "{}")):  # a chip's or a page's context
                click.echo(f"    {'context':>9}: {line}")
            click.echo(_render_messages(row["messages"]))
            for side in ("chosen", "rejected"):  # a preference pair's two answers
                if row.get(side):
                    click.echo(_render_messages([{**m, "role": side} for m in row[side]]))
            if row["answers"]:
                click.echo(f"    answers: {row['answers'][:10]}")


@main.command()
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["llava", "sharegpt", "swift", "jsonl", "webdataset", "lmms_eval"]),
              required=True)
@click.option("-o", "--dest", type=click.Path(file_okay=False), default=None, help="Default: OUT/exports/FORMAT.")
@click.option("--images-dir", type=click.Path(file_okay=False), default=None, help="Default: DEST/images.")
@click.option("--absolute-paths", is_flag=True,
              help="Image paths absolute (default: relative to DEST, i.e. LLaMA-Factory's media_dir / ROOT_IMAGE_DIR).")
@click.option("--shard-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="webdataset: rows per tar shard.")
def export(out: str, fmt: str, dest: str | None, images_dir: str | None, absolute_paths: bool, shard_size: int) -> None:
    """Export a built dataset OUT for another tool: LLaVA json, ShareGPT (+ LLaMA-Factory dataset_info.json),
    ms-swift JSONL, JSONL, WebDataset shards or an lmms-eval task."""
    path = Path(out)
    try:
        result = run_export(path, fmt=fmt, dest=Path(dest) if dest else path / "exports" / fmt,
                            images_dir=Path(images_dir) if images_dir else None, absolute_paths=absolute_paths,
                            shard_size=shard_size)
    except ValueError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    for split, file in result.files.items():
        click.echo(f"{split}: {file}")
    if result.rejected:
        reasons = ", ".join(f"{k}: {v}" for k, v in result.rejected.items())
        click.echo(f"not exported: {sum(result.rejected.values())} rows ({reasons}); see {result.rejects_path}")


@main.command("import-llamafactory")
@click.argument("dataset_info", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", "out", type=click.Path(dir_okay=False), default=None,
              help="Write the recipe here (default: print it). An existing file is never overwritten.")
@click.option("--name", default="llamafactory", show_default=True, help="The recipe's name.")
def import_llamafactory(dataset_info: str, out: str | None, name: str) -> None:
    """Turn LLaMA-Factory's DATASET_INFO (dataset_info.json) into a recipe with one sharegpt source per entry."""
    target = Path(out) if out else None
    if target is not None and target.exists():
        click.echo(f"error: {target} exists; choose another -o (vlmdata never overwrites a file it did not write)",
                   err=True)
        sys.exit(2)
    try:
        text = recipe_from_registry(Path(dataset_info), name=name, recipe_dir=target.parent if target else Path.cwd())
    except ValueError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    if target is None:
        click.echo(text, nl=False)
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    click.echo(f"wrote {target}")


@main.command()
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("--per-task", default=3, show_default=True, help="Sample rows shown per task.")
@click.option("--seed", default=0, show_default=True)
def report(out: str, per_task: int, seed: int) -> None:
    """(Re)write OUT/report.html: funnel, rejects, task mix, duplicates and sample rows, self-contained."""
    from vlmdata.output.report.html import write_report  # here, not at the top: brings numpy and pyarrow

    click.echo(str(write_report(Path(out), per_task=per_task, seed=seed)))


if __name__ == "__main__":  # pragma: no cover
    main()
