"""The recipe's `engine:` section: where the steps run. The engine changes speed, never the output.

    engine: {kind: local}                                        # default (workers: min(4, CPUs))
    engine: {kind: local, workers: 8}                            # worker processes for per-row steps
    engine: {kind: ray, address: ray://head:10001, num_cpus: 8}  # Ray Data (`pip install vlmdata[ray]`)

`address` left out: `RAY_ADDRESS` if set, else a Ray started for this build (with `num_cpus`, default all
cores) and stopped after it. `num_cpus` only applies to such a local Ray; a cluster has its own.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_WORKERS = 256  # processes per machine; each holds a batch of decoded images


class LocalEngine(BaseModel):
    """`workers`: processes for per-row steps (decode, instruct, filters, dedup keys); default
    min(4, usable CPUs). 1 runs everything in the build's own process. The output is the same for any N."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["local"] = "local"
    workers: int | None = Field(default=None, ge=1, le=MAX_WORKERS)


class RayEngine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["ray"] = "ray"
    address: str | None = None
    num_cpus: int | None = Field(default=None, ge=1, le=65536)


EngineSpec = Annotated[LocalEngine | RayEngine, Field(discriminator="kind")]
