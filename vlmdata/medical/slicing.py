"""Which slices of a stack (a DICOM series, a multi-frame file, a NIfTI volume) become rows.

    slices: middle                      # one row: the middle slice (the default)
    slices: all                         # one row per slice
    slices: {every: 5}                  # slices 0, 5, 10, ...
    slices: {count: 7}                  # 7 slices evenly spaced from the first to the last
    slices: {montage: {rows: 2, cols: 3}}   # one row: 6 evenly spaced slices tiled in reading order

Indices are positions in the stack after ordering (by position along the slice normal), so
"middle" is the anatomical middle, not the middle file name.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Every(BaseModel):
    model_config = ConfigDict(extra="forbid")
    every: int = Field(ge=1)


class Count(BaseModel):
    model_config = ConfigDict(extra="forbid")
    count: int = Field(ge=1)


class Grid(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rows: int = Field(ge=1, le=16)
    cols: int = Field(ge=1, le=16)


class Montage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    montage: Grid


SliceSpec = Literal["middle", "all"] | Every | Count | Montage


def evenly(n: int, k: int) -> list[int]:
    """k indices evenly spaced over 0..n-1, first and last included (all of them when k >= n)."""
    if k >= n:
        return list(range(n))
    if k == 1:
        return [n // 2]
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)})


def select(n: int, spec: SliceSpec) -> list[list[int]]:
    """The slice indices of each row the stack gives: one list per row (a montage row has several)."""
    if n <= 0:
        return []
    if spec == "middle":
        return [[n // 2]]
    if spec == "all":
        return [[i] for i in range(n)]
    if isinstance(spec, Every):
        return [[i] for i in range(0, n, spec.every)]
    if isinstance(spec, Count):
        return [[i] for i in evenly(n, spec.count)]
    return [evenly(n, spec.montage.rows * spec.montage.cols)]


def grid_of(spec: SliceSpec) -> tuple[int, int] | None:
    return (spec.montage.rows, spec.montage.cols) if isinstance(spec, Montage) else None
