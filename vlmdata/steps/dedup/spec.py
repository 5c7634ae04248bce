"""The recipe's `dedup:` section. Pydantic only: `vlmdata validate` imports it without numpy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from vlmdata.config.path_types import ExistingPath
from vlmdata.steps.dedup.eval_paths import eval_set_problem


class TextDedup(BaseModel):
    """`method: exact` drops identical normalised text; `minhash` also drops near-duplicates."""

    model_config = ConfigDict(extra="forbid")
    method: Literal["exact", "minhash"] = "minhash"
    fields: list[Literal["system", "user", "assistant"]] = Field(default=["user", "assistant"], min_length=1)
    threshold: float = Field(default=0.85, gt=0.0, le=1.0)
    num_perm: int = Field(default=128, ge=8, le=1024)
    shingle: int = Field(default=3, ge=1, le=32)  # words per shingle
    bands: int | None = Field(default=None, ge=1)
    rows: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _bands_rows(self) -> TextDedup:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("dedup.text.bands and dedup.text.rows go together (or leave both out)")
        if self.bands is not None and self.rows is not None and self.bands * self.rows > self.num_perm:
            raise ValueError(f"dedup.text.bands × rows = {self.bands * self.rows} > num_perm {self.num_perm}")
        return self


class ImageDedup(BaseModel):
    """Perceptual hashes (`phash` ...: copies, resizes, re-encodes) or embeddings (`semantic`, SemDeDup:
    crops, re-shoots, the same scene in another photo; needs the recipe's `embed:` model).

    semantic: `threshold` is the cosine at or above which two images are one; `clusters` the k-means
    k (`auto` ≈ √images; one cluster, i.e. exact, up to 4096 images); `keep` which row of a group
    stays: first (first seen), easy (closest to its cluster centre), hard (farthest: SemDeDup's
    choice), random (seeded). `max_distance`/`hash_size` still set the hash check of `dedup.against`.
    """

    model_config = ConfigDict(extra="forbid")
    method: Literal["phash", "dhash", "ahash", "whash", "semantic"] = "phash"
    max_distance: int = Field(default=4, ge=0, le=24)
    hash_size: int = Field(default=8, ge=2, le=8)  # hash_size² bits must fit in 64
    threshold: float = Field(default=0.95, gt=0.0, le=1.0)  # semantic only
    clusters: int | Literal["auto"] = "auto"  # semantic only
    keep: Literal["first", "easy", "hard", "random"] = "first"  # semantic only

    @property
    def hash_method(self) -> str:
        """The perceptual hash used for images (semantic dedup still hashes for `against`)."""
        return "phash" if self.method == "semantic" else self.method

    @model_validator(mode="after")
    def _sizes(self) -> ImageDedup:
        if isinstance(self.clusters, int) and self.clusters < 1:
            raise ValueError(f"dedup.images.clusters must be auto or >= 1, got {self.clusters}")
        if self.method != "semantic" and ("threshold" in self.model_fields_set or "clusters" in self.model_fields_set
                                          or "keep" in self.model_fields_set):
            raise ValueError("dedup.images.threshold, clusters and keep are for method: semantic "
                             f"(method {self.method} uses max_distance)")
        if self.method == "whash" and self.hash_size & (self.hash_size - 1):
            raise ValueError(f"dedup.images.hash_size must be a power of two for whash, got {self.hash_size}")
        if self.max_distance >= self.hash_size ** 2:
            raise ValueError(f"dedup.images.max_distance {self.max_distance} >= the hash's {self.hash_size ** 2} bits")
        return self


def _eval_set(value: Path) -> Path:
    why = eval_set_problem(value)
    if why:
        raise ValueError(why)
    return value


EvalSetPath = Annotated[ExistingPath, AfterValidator(_eval_set)]


class DedupSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: TextDedup | None = None
    images: ImageDedup | None = None
    vqa_composite: bool = False
    against: list[EvalSetPath] = Field(default_factory=list)
    against_ngram: int = Field(default=8, ge=1)
    workers: int | None = Field(default=None, ge=1, le=256)  # processes hashing `against` eval images; default min(4, CPUs)

    def image_hashing(self) -> ImageDedup:
        """The image hash and Hamming radius of every image comparison, decontamination included:
        `dedup.images` when given, else ImageDedup's own defaults (the only place they are written)."""
        return self.images if self.images is not None else ImageDedup()

    @model_validator(mode="after")
    def _composite(self) -> DedupSpec:
        if self.vqa_composite and self.images is None:
            raise ValueError("dedup.vqa_composite needs dedup.images (the image half of the key)")
        return self
