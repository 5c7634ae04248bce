"""Which engine runs a build: the recipe's `engine:` (or the CLI's `--engine`) → an `Engine`.

One table from kind to engine, so `build` never looks at the engine's type. A new engine is its
`engine:` spec (spec.py), its `Engine` subclass, and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from vlmdata.engines.base import Engine
from vlmdata.engines.local import LocalRunner
from vlmdata.engines.pool import default_workers
from vlmdata.engines.ray import RayRunner  # imports no ray: RayRunner does, when a build runs on it
from vlmdata.engines.spec import EngineSpec, LocalEngine, RayEngine


def _local(spec: LocalEngine, *, workers: int | None, spill_dir: Path) -> Engine:
    return LocalRunner(workers=workers or spec.workers or default_workers(), spill_dir=spill_dir)


def _ray(spec: RayEngine, *, workers: int | None, spill_dir: Path) -> Engine:
    return RayRunner(spec=spec)  # Ray schedules its own workers; `--workers` is the local engine's


ENGINES: dict[str, tuple[type[Any], Callable[..., Engine]]] = {
    "local": (LocalEngine, _local),
    "ray": (RayEngine, _ray),
}


def engine_spec(spec: EngineSpec, kind: str | None) -> EngineSpec:
    """The recipe's `engine:`, or a default one of `kind` (the CLI's `--engine`) when that differs."""
    if kind is None or kind == spec.kind:
        return spec
    return ENGINES[kind][0]()


def make_engine(spec: EngineSpec, *, workers: int | None, spill_dir: Path) -> Engine:
    """The engine for `spec`; `workers` (the CLI's `--workers`) overrides the local engine's `engine.workers`."""
    return ENGINES[spec.kind][1](spec, workers=workers, spill_dir=spill_dir)
