"""Source adapters, one per format, registered by their recipe `kind`.

Adding a format = one module with a `Spec` (pydantic, `kind: Literal[...]`) and a reader, plus one
line here. Modules import only light packages at the top; heavy ones (pyarrow, pydicom, datasets)
are imported inside the reader, so validating a recipe stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any, Union

from pydantic import Field

from vlmdata.rows import Record, Reject
from vlmdata.sources.base import SourceSpec, limited
from vlmdata.sources.coco import CocoSpec, read_coco
from vlmdata.sources.dicom import DicomSpec, read_dicom
from vlmdata.sources.hf import HfSpec, read_hf
from vlmdata.sources.imagefolder import ImageFolderSpec, read_imagefolder
from vlmdata.sources.llava import LlavaSpec, read_llava
from vlmdata.sources.llava_onevision import LlavaOneVisionSpec, read_llava_onevision
from vlmdata.sources.medvqa import PathVqaSpec, SlakeSpec, VqaRadSpec, read_pathvqa, read_slake, read_vqa_rad
from vlmdata.sources.nifti import NiftiSpec, read_nifti
from vlmdata.sources.shapes import ShapesSpec, read_shapes
from vlmdata.sources.sharegpt import ShareGptSpec, read_sharegpt
from vlmdata.sources.tabular import (
    CsvSpec,
    JsonlSpec,
    JsonSpec,
    ParquetSpec,
    read_csv,
    read_json,
    read_jsonl,
    read_parquet,
)
from vlmdata.sources.vqav2 import VqaV2Spec, read_vqav2
from vlmdata.sources.webdataset import WebDatasetSpec, read_webdataset

READERS: dict[type[SourceSpec], Callable[[Any], Iterator[Record | Reject]]] = {
    JsonlSpec: read_jsonl,
    JsonSpec: read_json,
    CsvSpec: read_csv,
    ParquetSpec: read_parquet,
    HfSpec: read_hf,
    ImageFolderSpec: read_imagefolder,
    LlavaSpec: read_llava,
    DicomSpec: read_dicom,
    CocoSpec: read_coco,
    VqaV2Spec: read_vqav2,
    ShapesSpec: read_shapes,
    ShareGptSpec: read_sharegpt,
    WebDatasetSpec: read_webdataset,
    LlavaOneVisionSpec: read_llava_onevision,
    NiftiSpec: read_nifti,
    VqaRadSpec: read_vqa_rad,
    SlakeSpec: read_slake,
    PathVqaSpec: read_pathvqa,
}
KINDS: tuple[str, ...] = tuple(spec.model_fields["kind"].default for spec in READERS)

AnySource = Annotated[Union[tuple(READERS)], Field(discriminator="kind")]  # noqa: UP007


def read_source(spec: SourceSpec, *, limit: int | None = None) -> Iterator[Record | Reject]:
    """Stream a source's records; `limit` (or the spec's own) caps the number of good records."""
    cap = min(x for x in (limit, spec.limit) if x is not None) if (limit or spec.limit) else None
    return limited(READERS[type(spec)](spec), cap)
