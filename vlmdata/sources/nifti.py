"""`nifti`: .nii / .nii.gz volumes (a file, or every one under a folder), sliced into 2-D rows.

    - {name: brain, kind: nifti, path: volumes/, plane: axial, slices: {count: 5}, window: brain, modality: CT}

Each volume is reoriented to canonical RAS+ first (see `vlmdata.medical.volume_image`), so `plane` names the
anatomical plane whatever the file's affine; `slices` picks rows as for DICOM (`vlmdata.medical.slicing`).
NIfTI has no VOI window or modality: `window` is a preset, `{center, width}` or `auto` (the slice's
own min..max; also what `header` means when the file sets no cal_min/cal_max), and `modality` is
context the recipe states. Context carries plane, slice index/position (mm, world coordinates along
the plane's axis) and spacing, so templates can say where a slice is. Reading needs `nibabel`
(the `medical` extra).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from vlmdata.config.path_types import ExistingPath
from vlmdata.medical.dicom_image import MODALITY_NAMES
from vlmdata.medical.slicing import SliceSpec, grid_of, select
from vlmdata.medical.view import NiftiView
from vlmdata.medical.volume_image import PLANES
from vlmdata.medical.windows import PRESETS, CenterWidth, PresetName
from vlmdata.rows import ImageRef, Record, Reject
from vlmdata.sources.base import SourceSpec

NiftiWindow = PresetName | Literal["auto", "header"] | CenterWidth


class NiftiSpec(SourceSpec):
    kind: Literal["nifti"] = "nifti"
    path: ExistingPath
    task: str = "report"
    plane: Literal["axial", "coronal", "sagittal"] = "axial"
    slices: SliceSpec = "middle"
    window: NiftiWindow = "auto"
    windows: list[NiftiWindow] | None = Field(default=None, min_length=1)
    channels: list[NiftiWindow] | None = Field(default=None, min_length=3, max_length=3)
    modality: str | None = None  # e.g. CT or MR: NIfTI does not record it

    @model_validator(mode="after")
    def _one_window_kind(self) -> NiftiSpec:
        given = [k for k in ("windows", "channels") if getattr(self, k) is not None]
        if given and "window" in self.model_fields_set:
            raise ValueError(f"give one of window, windows, channels (got window and {given[0]})")
        return self


def _is_nifti(p: Path) -> bool:
    return p.name.lower().endswith((".nii", ".nii.gz"))


def _resolve(w: NiftiWindow, header: Any) -> tuple[str, tuple[float, float] | None]:
    if isinstance(w, CenterWidth):
        return w.name or f"C{w.center:g}/W{w.width:g}", (w.center, w.width)
    if w in PRESETS:
        return w, PRESETS[w]
    lo, hi = float(header.get("cal_min", 0) or 0), float(header.get("cal_max", 0) or 0)
    if w == "header" and hi > lo:
        return "header (cal_min..cal_max)", ((lo + hi) / 2, hi - lo)
    return "auto", None


def read_nifti(spec: NiftiSpec) -> Iterator[Record | Reject]:
    """One record per picked slice (or montage) and window variant of each volume; headers only, the
    pixels are read in the load step."""
    try:
        import nibabel as nib
    except ImportError:
        yield Reject(spec.name, spec.path.name, "missing_dependency",
                     "reading NIfTI needs nibabel: pip install nibabel (or the vlmdata[medical] extra)", "load")
        return

    root = spec.path if spec.path.is_dir() else spec.path.parent
    files = sorted(p for p in spec.path.rglob("*") if p.is_file() and _is_nifti(p)) if spec.path.is_dir() else [spec.path]
    for file in files:
        rel = file.relative_to(root).as_posix()
        try:
            img = nib.as_closest_canonical(nib.load(file))  # header only: the data is read in the load step
            if len(img.shape) < 3:
                raise ValueError(f"{len(img.shape)} dimensions, a volume needs 3")
        except Exception as e:
            yield Reject(spec.name, rel, "image_corrupt", f"cannot read NIfTI header: {type(e).__name__}: {e}", "load")
            continue
        yield from _volume_records(spec, img=img, file=file, rel=rel)


def _variants(spec: NiftiSpec) -> list[tuple[str, list[NiftiWindow]]]:
    """(locator suffix, windows) per image made of each slice: one per `windows` entry, else one."""
    if spec.channels is not None:
        return [("", list(spec.channels))]
    if spec.windows is not None:
        return [(f"@{w if isinstance(w, str) else (w.name or f'C{w.center:g}W{w.width:g}')}", [w]) for w in spec.windows]
    return [("", [spec.window])]


def _volume_records(spec: NiftiSpec, *, img: Any, file: Path, rel: str) -> Iterator[Record]:
    axis = PLANES[spec.plane]
    grid = grid_of(spec.slices)
    n = int(img.shape[axis])
    picks = select(n, spec.slices)
    for suffix, windows in _variants(spec):
        resolved = [_resolve(w, img.header) for w in windows]
        for indices in picks:
            context = _slice_context(spec, img=img, rel=rel, axis=axis, n=n, color=len(resolved) == 3)
            if grid is not None:
                context["montage"] = {"rows": grid[0], "cols": grid[1], "slices": indices}
                locator = f"{rel}#{spec.plane}-montage{suffix}"
            else:
                i = indices[0]
                context["slice_index"] = i
                voxel = [0.0, 0.0, 0.0]
                voxel[axis] = float(i)
                context["slice_position_mm"] = round(float((img.affine @ [*voxel, 1.0])[axis]), 4)
                locator = f"{rel}#{spec.plane}={i}{suffix}" if len(picks) > 1 or suffix else rel
            context["window"] = ({"name": resolved[0][0], **_cw(resolved[0][1])} if len(resolved) == 1
                                 else {"channels": [{"name": r[0], **_cw(r[1])} for r in resolved]})
            view = NiftiView(axis=axis, index=None if grid else indices[0], windows=tuple(r[1] for r in resolved),
                             tiles=tuple(indices) if grid else (), grid=grid)
            yield Record(source=spec.name, locator=locator, task=spec.task,
                         images=[ImageRef(path=file, view=view)], context=context)


def _slice_context(spec: NiftiSpec, *, img: Any, rel: str, axis: int, n: int, color: bool) -> dict[str, Any]:
    """The volume's geometry as a slice's context (spacing, shape, modality), before its index and window."""
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    context: dict[str, Any] = {
        "file_name": rel, "plane": spec.plane, "slice_count": n,
        "slice_spacing_mm": round(zooms[axis], 4),
        "pixel_spacing_mm": [round(z, 4) for i, z in enumerate(zooms) if i != axis][::-1],
        "volume_shape": [int(s) for s in img.shape[:3]], "frames": 1, "color": color,
        "rows": 0, "columns": 0,
    }
    if spec.modality:
        context["modality"] = spec.modality
        context["modality_name"] = MODALITY_NAMES.get(spec.modality, spec.modality)
    shape2d = [int(s) for i, s in enumerate(img.shape[:3]) if i != axis]
    context["rows"], context["columns"] = shape2d[1], shape2d[0]
    return context


def _cw(values: tuple[float, float] | None) -> dict[str, float]:
    return {} if values is None else {"center": values[0], "width": values[1]}
