"""What flows between stages: `Record` (a source's raw row), `Reject` (a row that failed, with why).

A source yields records; the load step turns them into rows (plain dicts with the contract columns
plus a few internal ones that the writer drops). Any stage may yield a `Reject` instead of a row; the
engine counts it and appends it to `rejects.jsonl`, so no row is ever lost silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Columns a row carries between stages that are not part of the written contract.
INTERNAL_COLUMNS = ("image_hashes", "image_sizes", "fields", "context", "image_embeddings", "text_embeddings")


@dataclass(frozen=True)
class ImageRef:
    """Where an image comes from: a file on disk (checked against the source's image_root) or bytes.

    `window` and `frame` only matter for DICOM files (recipe overrides of the header's VOI window);
    `view` (a `vlmdata.medical.view` DicomView/NiftiView) is what a medical source decided instead.
    """

    path: Path | None = None
    data: bytes | None = None
    window: tuple[float, float] | None = None
    frame: str | int = "middle"
    view: Any = None

    def describe(self) -> str:
        return str(self.path) if self.path is not None else f"<{len(self.data or b'')} bytes>"


@dataclass
class Record:
    """One raw row from a source, before images are verified and before instructions are made.

    `fields` holds the canonical label fields the source mapped (question, answers, caption, ...);
    `messages` is set when the source already stores chat turns (LLaVA json, a vlmdata dataset).
    `meta` goes into the row's `meta` beside the source and locator (`scene`, `window`, `doc`, `page`).
    """

    source: str
    locator: str
    task: str
    images: list[ImageRef] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] | None = None
    context: dict[str, Any] = field(default_factory=dict)
    # Lineage the source adds to the row's `meta` (a chip's scene and window, a page's document and number).
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reject:
    """A row that did not make it, with the stage, the reason code and a human-readable detail."""

    source: str
    locator: str
    reason: str
    detail: str
    stage: str = ""
    row_id: str | None = None
    extra: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "stage": self.stage,
            "source": self.source,
            "locator": self.locator,
            "reason": self.reason,
            "detail": self.detail,
        }
        if self.row_id:
            out["id"] = self.row_id
        if self.extra:
            out.update(self.extra)
        return out


class RowError(Exception):
    """Raised by helpers deep inside a stage; the stage turns it into a `Reject` for the row."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BuildError(Exception):
    """A failure of the whole build, not of one row (a missing or refused API key, an unreachable
    endpoint at start, a reject budget exceeded): engines let it through their per-row boundary."""


class SourceError(BuildError):
    """A source that cannot be read at all for a reason the user must fix (a split that does not exist):
    the build stops with this message instead of rejecting every row."""
