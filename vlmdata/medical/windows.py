"""VOI windows for medical images: named presets, explicit center/width, or the header's own windows.

A recipe names a window as a preset (`lung`), a mapping (`{center: 40, width: 400}`), `header` (the
file's first WindowCenter/WindowWidth pair), `{header: 2}` / `{header: "LUNG"}` (one of several header
windows, by index or by its WindowCenterWidthExplanation), or `auto` (the image's own min..max).
Presets are in Hounsfield units, so they mean what a radiologist expects on CT; they are the values
radiology references (Radiopaedia's "windowing (CT)") list. A window resolves, per file, to a
`Resolved` (name, center, width) that the renderer applies and the row context carries, so the report
and templates show exactly the window used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from vlmdata.rows import RowError

# name -> (center, width), Hounsfield units
PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "abdomen": (40.0, 400.0),
    "liver": (30.0, 150.0),
}
PresetName = Literal["lung", "mediastinum", "bone", "brain", "abdomen", "liver"]


class CenterWidth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    center: float
    width: float = Field(gt=0)
    name: str | None = None  # shown in the report and the row context (default: "C/W")


class HeaderWindow(BaseModel):
    """One of the file's header windows: by 0-based index or by its explanation (case-insensitive)."""

    model_config = ConfigDict(extra="forbid")
    header: int | str = 0


WindowSpec = PresetName | Literal["header", "auto"] | CenterWidth | HeaderWindow


@dataclass(frozen=True)
class Resolved:
    """A concrete window for one file; `center`/`width` None means the image's own min..max."""

    name: str
    center: float | None = None
    width: float | None = None

    def as_context(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.center is not None:
            out.update(center=self.center, width=self.width)
        return out


def _values(value: Any) -> list[float]:
    if value is None:
        return []
    items = list(value) if hasattr(value, "__iter__") and not isinstance(value, str | bytes) else [value]
    out = []
    for v in items:
        try:
            out.append(float(v))
        except (TypeError, ValueError):
            out.append(float("nan"))
    return out


def header_windows(ds: Any) -> list[Resolved]:
    """Every usable WindowCenter/WindowWidth pair of a header, named by its explanation."""
    if "WindowCenter" not in ds:  # an enhanced multi-frame file keeps its windows in the functional groups
        shared = ds.get("SharedFunctionalGroupsSequence")
        if shared and "FrameVOILUTSequence" in shared[0] and len(shared[0].FrameVOILUTSequence):
            ds = shared[0].FrameVOILUTSequence[0]
    centers, widths = _values(ds.get("WindowCenter")), _values(ds.get("WindowWidth"))
    raw = ds.get("WindowCenterWidthExplanation")
    names = [] if raw is None else ([str(raw)] if isinstance(raw, str) else [str(x) for x in raw])
    out = []
    for i, (c, w) in enumerate(zip(centers, widths, strict=False)):
        if c == c and w == w and w > 0:  # not NaN
            label = names[i].strip() if i < len(names) and names[i].strip() else f"header {i}"
            out.append(Resolved(name=label, center=c, width=w))
    return out


def resolve_window(spec: WindowSpec | None, ds: Any) -> Resolved:
    """The window `spec` means for the file whose header is `ds` (None = header, else auto)."""
    if spec is None or spec == "header":
        found = header_windows(ds)
        return Resolved(name=f"header ({found[0].name})", center=found[0].center, width=found[0].width) \
            if found else Resolved(name="auto")
    if spec == "auto":
        return Resolved(name="auto")
    if isinstance(spec, str):
        center, width = PRESETS[spec]
        return Resolved(name=spec, center=center, width=width)
    if isinstance(spec, CenterWidth):
        return Resolved(name=spec.name or f"C{spec.center:g}/W{spec.width:g}", center=spec.center, width=spec.width)
    found = header_windows(ds)
    if isinstance(spec.header, int):
        if 0 <= spec.header < len(found):
            w = found[spec.header]
            return Resolved(name=f"header ({w.name})", center=w.center, width=w.width)
    else:
        for w in found:
            if w.name.lower() == spec.header.lower():
                return Resolved(name=f"header ({w.name})", center=w.center, width=w.width)

    have = ", ".join(f"{i}: {w.name}" for i, w in enumerate(found)) or "none"
    raise RowError("dicom_window", f"header window {spec.header!r} not in this file (it has {have})")
