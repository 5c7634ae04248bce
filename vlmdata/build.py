"""`vlmdata build`: run a validated recipe and put the result in place atomically.

Everything is written into a hidden sibling folder (`.NAME.partial-PID`) and renamed to the final
name only when complete (vlmdata/output/atomic_dir.py), so a crash or kill never leaves a half dataset under
the final name; the next build removes partial folders whose process is gone. Before any work the
output folder is checked (vlmdata/output/guard.py): a build replaces only an earlier vlmdata dataset,
never a folder of the user's. SIGTERM is handled like Ctrl-C: the build stops, its partial folder is
removed and the workers are ended.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vlmdata.engines.select import engine_spec as choose_engine
from vlmdata.engines.select import make_engine
from vlmdata.engines.spec import EngineSpec
from vlmdata.medical.deid import check_build
from vlmdata.output.atomic_dir import clean_stale, replace_dir
from vlmdata.output.export.formats import export
from vlmdata.output.guard import OutputError, check_destination
from vlmdata.output.rejects import RejectLog
from vlmdata.output.report.card import render_card
from vlmdata.output.report.html import write_report
from vlmdata.output.report.manifest import build_manifest, write_manifest
from vlmdata.output.writer import ArrowWriter
from vlmdata.plan import make_plan
from vlmdata.recipe import LoadedRecipe
from vlmdata.reject_budget import check_budget, unknown_stages
from vlmdata.sources.dicom import DicomSpec, dicom_files
from vlmdata.steps.base import StageStats


@dataclass
class BuildResult:
    path: Path
    manifest: dict[str, Any]


class Terminated(KeyboardInterrupt):
    """The build got SIGTERM: it stops like at Ctrl-C (partial folder removed, workers ended)."""


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM into `Terminated` for the duration of a build (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise Terminated(f"terminated by signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def build(loaded: LoadedRecipe, *, out: Path | None = None, limit: int | None = None, progress: bool = True,
          cache_dir: Path | None = None, engine: str | None = None, workers: int | None = None,
          force: bool = False) -> BuildResult:
    """Build the dataset described by `loaded` into `out` (default: the recipe's output.path).

    `engine` ("local" or "ray") overrides the recipe's `engine.kind`; `workers` the local engine's
    `engine.workers`; the output is the same either way. Raises OutputError (before any work) when
    `out` holds anything but an earlier vlmdata dataset; `force` lets it replace one of another recipe."""
    recipe = loaded.recipe
    engine_spec = choose_engine(recipe.engine, engine)
    final = check_destination(loaded, out, force=force)
    plan = make_plan(loaded, out=final, cache_dir=cache_dir)
    problems = unknown_stages(recipe.max_reject_ratio, plan.steps)
    if problems:
        raise OutputError("; ".join(problems))
    with _sigterm_as_interrupt():
        return _build(loaded, plan=plan, final=final, engine_spec=engine_spec, limit=limit, progress=progress,
                      workers=workers, cache_dir=cache_dir)


def _build(loaded: LoadedRecipe, *, plan: Any, final: Path, engine_spec: EngineSpec, limit: int | None,
           progress: bool, workers: int | None, cache_dir: Path | None) -> BuildResult:
    recipe = loaded.recipe
    final.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(final)
    tmp = final.parent / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    started = time.perf_counter()
    created = datetime.now(timezone.utc).isoformat(timespec="seconds")
    if not progress:
        import datasets

        datasets.disable_progress_bars()
    try:
        writer = ArrowWriter(dest=tmp, recipe_hash=loaded.sha256, max_shard_size=recipe.output.max_shard_size,
                             preference=recipe.preference is not None)
        rejects = RejectLog(tmp / "rejects.jsonl")
        try:
            runner = make_engine(engine_spec, workers=workers, spill_dir=tmp / ".staging")
            stages = runner.run(plan, writer=writer, rejects=rejects, limit=limit, progress=progress)
            if writer.rejects:  # rows the writer could not store: a stage of their own in the funnel
                written = StageStats(stage="write")
                for r in writer.rejects:
                    rejects.add(r)
                    written.rejected[r.reason] += 1
                written.rows_in = len(writer.rejects) + writer.rows_written
                written.rows_out = written.rows_in - len(writer.rejects)
                stages.append(written)
        finally:
            rejects.close()
        check_budget(limit=recipe.max_reject_ratio, steps=plan.steps, stats=stages,
                     sources={s.name: s.max_reject_ratio for s in recipe.sources if s.max_reject_ratio is not None},
                     source_rejects=rejects.by_source, source_reads=rejects.reads, source_reasons=rejects.reasons)
        splits = writer.finish()
        shutil.rmtree(tmp / ".staging", ignore_errors=True)
        manifest = build_manifest(name=recipe.name, recipe_path=loaded.path, recipe_sha256=loaded.sha256,
                                  recipe=loaded.redacted(), stages=stages, splits=splits, counts=writer.counts,
                                  wall_seconds=time.perf_counter() - started, created=created, limit=limit)
        warnings = writer.warnings()
        if warnings:
            manifest["warnings"] = warnings
        write_manifest(tmp / "manifest.json", manifest)
        (tmp / "README.md").write_text(render_card(manifest), encoding="utf-8")
        (tmp / "recipe.resolved.yaml").write_text(_yaml(manifest["recipe"]), encoding="utf-8")
        for fmt in recipe.output.exports:
            export(tmp, fmt=fmt, dest=tmp / "exports" / fmt, name=recipe.name, final_dest=final / "exports" / fmt)
        if recipe.output.report:
            write_report(tmp, seed=recipe.seed)
        deid = _deidentification_check(loaded, tmp=tmp, cache=plan_cache_dir(final, cache_dir))
        if deid is not None:
            manifest["deidentification"] = deid
            write_manifest(tmp / "manifest.json", manifest)
            (tmp / "README.md").write_text(render_card(manifest), encoding="utf-8")
        replace_dir(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return BuildResult(path=final, manifest=manifest)


def plan_cache_dir(final: Path, cache_dir: Path | None) -> Path:
    """Where the synthesis cache of this build lives (see `vlmdata.plan.make_plan`)."""
    return cache_dir or final.parent / ".vlmdata-cache"


def _deidentification_check(loaded: LoadedRecipe, *, tmp: Path, cache: Path) -> dict[str, Any] | None:
    """With DICOM sources, prove that no identifying header value reached the output (see vlmdata.medical.deid)."""
    inputs = [f for src in loaded.recipe.sources if isinstance(src, DicomSpec) for f in dicom_files(src)]
    if not inputs:
        return None

    roots = [tmp] + ([cache] if loaded.recipe.synthesize and cache.exists() else [])
    return check_build(dicom_inputs=inputs, roots=roots)


def _yaml(data: dict[str, Any]) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
