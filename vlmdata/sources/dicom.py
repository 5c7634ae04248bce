"""`dicom`: DICOM files (a file, or every DICOM file under a folder, found by the 'DICM' magic).

    - {name: ct, kind: dicom, path: scans/, group: series, slices: {count: 5}, windows: [lung, mediastinum]}

Each file (`group: file`, the default) or each series (`group: series`: files sharing a
SeriesInstanceUID, ordered by ImagePositionPatient along the slice normal, InstanceNumber only when
positions are missing) is a stack of slices; a multi-frame file is a stack of its frames (ordered by
their per-frame positions when it has them). `slices` picks the rows a stack gives (see
`vlmdata.medical.slicing`). Each row's image is the windowed 8-bit rendering (see `vlmdata.medical.dicom_image`):
`window` (a preset such as lung, `{center, width}`, `header`, `{header: N or name}`, `auto`), or
`windows` (one row per window), or `channels` (three windows as the three colour channels).

The context holds the non-identifying header fields (modality, body part, plane, ...), the slice's
position and spacing, the window used, and hashed series/study/patient keys (`vlmdata.medical.deid.hashed`)
that group rows without revealing the UIDs. A file whose header says BurnedInAnnotation: YES is a
reject unless `allow_burned_in: true`; overlay planes are drawn only with `overlays: true`. Labels
can be joined from a CSV/JSONL file keyed by the file's relative path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from vlmdata.config.path_types import ExistingFile, ExistingPath
from vlmdata.medical.deid import MIN_CHARS, hashed, identifying_values, is_placeholder
from vlmdata.medical.dicom_image import header_context, header_int, read_header
from vlmdata.medical.slicing import SliceSpec, grid_of, select
from vlmdata.medical.view import DicomView
from vlmdata.medical.windows import CenterWidth, WindowSpec, resolve_window
from vlmdata.rows import ImageRef, Record, Reject, RowError
from vlmdata.sources.base import SourceSpec, _as_answers, is_missing
from vlmdata.sources.labels import read_labels

Window = CenterWidth  # the name older code imports


class DicomSpec(SourceSpec):
    kind: Literal["dicom"] = "dicom"
    path: ExistingPath
    task: str = "report"
    group: Literal["file", "series"] = "file"
    slices: SliceSpec = "middle"
    window: WindowSpec | None = None  # None: the header's first window, else the image's min..max
    windows: list[WindowSpec] | None = Field(default=None, min_length=1)  # one row per window
    channels: list[WindowSpec] | None = Field(default=None, min_length=3, max_length=3)  # one RGB image
    frame: Literal["middle", "first"] | int = "middle"  # a multi-frame file's frame (same as `slices`)
    overlays: bool = False
    allow_burned_in: bool = False
    labels: ExistingFile | None = None
    key: str = "file_name"

    @model_validator(mode="after")
    def _one_window_kind(self) -> DicomSpec:
        given = [k for k in ("window", "windows", "channels") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of window, windows, channels (got {' and '.join(given)})")
        if "frame" in self.model_fields_set and "slices" in self.model_fields_set:
            raise ValueError("give slices or frame, not both (frame is the older name for one slice)")
        return self


def _is_dicom(path: Path) -> bool:
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with path.open("rb") as f:
            head = f.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:] == b"DICM"


def dicom_files(spec: DicomSpec) -> list[Path]:
    """The files this source reads, in a stable order (also what the de-identification check reads)."""
    if not spec.path.is_dir():
        return [spec.path]
    return sorted(p for p in spec.path.rglob("*") if p.is_file() and _is_dicom(p))


@dataclass
class _Slice:
    file: Path
    rel: str
    frame: int | None  # None: a single-frame file
    position: float | None  # mm along the slice normal
    ds: Any


def _normal(iop: Any) -> tuple[float, float, float] | None:
    try:
        r = [float(x) for x in iop]
    except (TypeError, ValueError):
        return None
    if len(r) != 6:
        return None
    return (r[1] * r[5] - r[2] * r[4], r[2] * r[3] - r[0] * r[5], r[0] * r[4] - r[1] * r[3])


def _along(ipp: Any, normal: tuple[float, float, float] | None) -> float | None:
    if normal is None or ipp is None:
        return None
    try:
        p = [float(x) for x in ipp]
    except (TypeError, ValueError):
        return None
    return sum(a * b for a, b in zip(p, normal, strict=False)) if len(p) == 3 else None


def _frame_geometry(ds: Any, frames: int) -> list[float | None]:
    """Per-frame positions along the normal of an enhanced multi-frame file, else all None."""
    shared = ds.get("SharedFunctionalGroupsSequence")
    per = ds.get("PerFrameFunctionalGroupsSequence")
    if not per or len(per) != frames:
        return [None] * frames
    iop = None
    if shared and "PlaneOrientationSequence" in shared[0]:
        iop = shared[0].PlaneOrientationSequence[0].get("ImageOrientationPatient")
    out: list[float | None] = []
    for item in per:
        orient = item.get("PlaneOrientationSequence")
        pos = item.get("PlanePositionSequence")
        normal = _normal(orient[0].get("ImageOrientationPatient") if orient else iop)
        out.append(_along(pos[0].get("ImagePositionPatient") if pos else None, normal))
    return out


def _ordered(slices: list[_Slice]) -> list[_Slice]:
    """By position along the normal when every slice has one, else by InstanceNumber, else file name."""
    if all(s.position is not None for s in slices):
        return sorted(slices, key=lambda s: (s.position, s.rel, s.frame or 0))

    def instance(s: _Slice) -> tuple[int, str, int]:
        try:
            return (int(s.ds.get("InstanceNumber")), s.rel, s.frame or 0)
        except (TypeError, ValueError):
            return (2**31, s.rel, s.frame or 0)

    return sorted(slices, key=instance)


def _spacing(stack: list[_Slice]) -> float | None:
    pos = [s.position for s in stack if s.position is not None]
    if len(pos) >= 2 and len(pos) == len(stack):
        gaps = sorted(abs(b - a) for a, b in zip(pos, pos[1:], strict=False))
        return round(gaps[len(gaps) // 2], 4)
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        value = stack[0].ds.get(keyword)
        if value not in (None, ""):
            try:
                return float(value)
            except (TypeError, ValueError):
                pass
    return None


def _file_stack(file: Path, rel: str, ds: Any) -> list[_Slice]:
    frames = header_int(ds, "NumberOfFrames", 1)
    if frames <= 1:
        return [_Slice(file, rel, None, _along(ds.get("ImagePositionPatient"), _normal(ds.get("ImageOrientationPatient"))), ds)]
    positions = _frame_geometry(ds, frames)
    stack = [_Slice(file, rel, i, positions[i], ds) for i in range(frames)]
    return sorted(stack, key=lambda s: (s.position, s.frame)) if all(p is not None for p in positions) else stack


def _window_variants(spec: DicomSpec) -> list[tuple[str, list[WindowSpec | None]]]:
    """(locator suffix, windows of one image) per row variant."""
    if spec.channels is not None:
        return [("", list(spec.channels))]
    if spec.windows is not None:
        return [(f"@{_label(w)}", [w]) for w in spec.windows]
    return [("", [spec.window])]


def _label(w: WindowSpec | None) -> str:
    if isinstance(w, str):
        return w
    if isinstance(w, CenterWidth):
        return w.name or f"C{w.center:g}W{w.width:g}"
    if w is None:
        return "header"
    return f"header{w.header}"


def read_dicom(spec: DicomSpec) -> Iterator[Record | Reject]:
    import pydicom

    root = spec.path if spec.path.is_dir() else spec.path.parent
    labels: dict[str, dict[str, Any]] = {}
    if spec.labels:  # a malformed labels line is a reject of its own; the other lines still label
        labels, bad = read_labels(spec.labels, key=spec.key, source=spec.name)
        yield from bad
    stacks: dict[str, list[_Slice]] = {}
    order: list[str] = []
    for file in dicom_files(spec):
        rel = file.relative_to(root).as_posix()
        try:
            try:
                with file.open("rb") as f:
                    ds = read_header(f)  # never inflates a deflated file's pixel data
            except Exception:
                ds = pydicom.dcmread(file, stop_before_pixels=True)
        except Exception as e:
            yield Reject(spec.name, rel, "dicom_error", f"cannot read header: {type(e).__name__}: {e}", "load")
            continue
        if not spec.allow_burned_in and str(ds.get("BurnedInAnnotation", "")).strip().upper() == "YES":
            yield Reject(spec.name, rel, "burned_in_annotation", "BurnedInAnnotation is YES: the pixels may show "
                         "patient identifiers; set allow_burned_in: true on the source to keep it", "load")
            continue
        try:
            frames = header_int(ds, "NumberOfFrames", 1)
            header_int(ds, "Rows", 0), header_int(ds, "Columns", 0), header_int(ds, "SamplesPerPixel", 1)
        except RowError as e:
            yield Reject(spec.name, rel, e.reason, e.detail, "load")
            continue
        series = str(ds.get("SeriesInstanceUID", "") or "")
        key = f"s\0{series}" if spec.group == "series" and series and frames <= 1 else f"f\0{rel}"
        if key not in stacks:
            stacks[key] = []
            order.append(key)
        stacks[key].extend(_file_stack(file, rel, ds))
        if spec.group == "file":  # stream: a file-stack is complete as soon as it is read
            yield from _rows(spec, stacks.pop(key), labels=labels, series_stack=False)
            order.pop()
    for key in order:
        yield from _rows(spec, stacks[key], labels=labels, series_stack=key.startswith("s\0"))


def _selection(spec: DicomSpec, n: int) -> list[list[int]]:
    if "frame" in spec.model_fields_set and spec.frame != "middle":
        idx = 0 if spec.frame == "first" else int(spec.frame)
        return [[idx]]  # out of range: the renderer rejects it with the frame count
    return select(n, spec.slices)


def _rows(spec: DicomSpec, stack: list[_Slice], *, labels: dict[str, dict[str, Any]],
          series_stack: bool) -> Iterator[Record | Reject]:
    stack = _ordered(stack) if series_stack else stack
    n = len(stack)
    spacing = _spacing(stack)
    grid = grid_of(spec.slices) if "frame" not in spec.model_fields_set else None
    picks = _selection(spec, n)
    for variant, windows in _window_variants(spec):
        for indices in picks:
            if indices[0] >= n and n > 1:
                yield Reject(spec.name, stack[0].rel, "dicom_error",
                             f"frame {spec.frame} out of range (file has {n} frames)", "load")
                continue
            first = stack[min(indices[0], n - 1)]
            many_rows = len(picks) > 1 or grid is not None
            if grid is not None:
                locator = f"{first.rel}#series" if series_stack else f"{first.rel}#montage"
            elif many_rows and first.frame is not None:
                locator = f"{first.rel}#frame={first.frame}"
            else:
                locator = first.rel
            locator += variant
            try:
                resolved = [resolve_window(w, first.ds) for w in windows]
            except RowError as e:
                yield Reject(spec.name, locator, e.reason, e.detail, "load")
                continue
            context: dict[str, Any] = _without_identifiers(header_context(first.ds), first.ds)
            context["file_name"] = first.rel
            _stack_context(context, first.ds, hashed=hashed)
            context["slice_count"] = n
            if spacing is not None:
                context["slice_spacing_mm"] = spacing
            if grid is not None:
                context["montage"] = {"rows": grid[0], "cols": grid[1], "slices": indices}
            else:
                context["slice_index"] = indices[0]
                if first.position is not None:
                    context["slice_position_mm"] = round(first.position, 4)
            context["window"] = resolved[0].as_context() if len(resolved) == 1 else \
                {"channels": [r.as_context() for r in resolved]}
            values = tuple(None if r.center is None else (r.center, r.width) for r in resolved)
            view = DicomView(windows=values, frame=first.frame, overlays=spec.overlays,
                             allow_burned_in=spec.allow_burned_in, grid=grid,
                             tiles=tuple((str(stack[i].file), stack[i].frame) for i in indices) if grid else ())
            fields: dict[str, Any] = {}
            extra = labels.get(first.rel, {}) if labels else {}
            if extra:
                context.update({k: v for k, v in extra.items() if k != spec.key})
                for k in ("question", "caption", "label", "choices"):
                    if not is_missing(extra.get(k)):  # NaN / empty cells are missing values
                        fields[k] = extra[k]
                ans = extra.get("answers") if not is_missing(extra.get("answers")) else extra.get("answer")
                if not is_missing(ans):
                    fields["answers"] = _as_answers(ans)
            yield Record(source=spec.name, locator=locator, task=spec.task,
                         images=[ImageRef(path=first.file, view=view)], fields=fields, context=context)


def _without_identifiers(context: dict[str, Any], ds: Any) -> dict[str, Any]:
    """Drop header fields that contain one of the file's identifying values (a Manufacturer field
    "TOSHIBA_MEC" when the InstitutionName is "TOSHIBA"; a description quoting a patient's name)."""
    values = {v for vals in identifying_values(ds).values() for v in vals
              if len(v) >= MIN_CHARS and not is_placeholder(v)}
    dropped = [k for k, v in context.items() if isinstance(v, str) and any(x in v for x in values)]
    for k in dropped:
        del context[k]
    if dropped:
        context["withheld_fields"] = sorted(dropped)
    return context


def _stack_context(context: dict[str, Any], ds: Any, *, hashed: Any) -> None:
    """Hashed keys that group rows by series, study and patient without showing the identifiers."""
    for keyword, key in (("SeriesInstanceUID", "series_key"), ("StudyInstanceUID", "study_key"),
                         ("PatientID", "patient_key")):
        value = str(ds.get(keyword, "") or "").strip()
        if value:
            context[key] = hashed(value)
