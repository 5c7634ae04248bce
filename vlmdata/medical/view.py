"""How a medical image becomes one 2-D picture: which frame or slices, which windows, what is drawn.

A source that knows the header (dicom, nifti) decides this once per row and puts the decision on the
`ImageRef` (as its `view`); the load step then renders it in a worker. Everything here is small,
frozen and picklable, so it travels to worker processes and Ray tasks unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

# (center, width) of a window, or None for the image's own min..max
WindowValues = tuple[float, float] | None


@dataclass(frozen=True)
class DicomView:
    """`windows`: one (grey) or three (one per RGB channel). `tiles`: a montage of (file, frame) in
    reading order on a `grid` of (rows, cols); without tiles, `frame` of the ref's own file."""

    windows: tuple[WindowValues, ...] = (None,)
    frame: int | None = None  # None: the only frame (or the middle one of a multi-frame file)
    tiles: tuple[tuple[str, int | None], ...] = ()
    grid: tuple[int, int] | None = None
    overlays: bool = False
    allow_burned_in: bool = False


@dataclass(frozen=True)
class NiftiView:
    """Slices of a canonical (RAS+) volume along `axis` (0 sagittal, 1 coronal, 2 axial)."""

    axis: int
    index: int | None = None  # one slice; None with tiles for a montage
    windows: tuple[WindowValues, ...] = (None,)
    tiles: tuple[int, ...] = ()
    grid: tuple[int, int] | None = None
