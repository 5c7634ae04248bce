"""Dedup: drop exact / near-duplicate text, near-duplicate images, repeated (image, question) pairs,
and rows contaminated by eval sets — each with its reason and the row it duplicates.

    dedup:
      text: {method: minhash, fields: [user, assistant], threshold: 0.85, num_perm: 128, shingle: 3}
      images: {method: phash, max_distance: 4, hash_size: 8}
      vqa_composite: true          # same image AND same question = duplicate; other questions stay
      against: [../eval/vqa-test, ../eval/images]    # saved datasets or image folders
      against_ngram: 8

`key` hashes each batch (text signatures, perceptual hashes: compact columns, no image bytes); `fit`
decides once for all rows (vlmdata/dedup/decide.py); `apply` rejects or tags rows. Every kept row gets
`image_cluster` (the pixel sha of its first image's cluster representative, "" without images) so
the split step can keep near-duplicate images in one split.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from vlmdata.config.path_types import ExistingPath
from vlmdata.rows import Reject
from vlmdata.steps.base import GlobalStep, Row

if TYPE_CHECKING:  # the embed step imports numpy; the recipe (and `vlmdata validate`) imports this spec
    from vlmdata.embed.step import EmbedStep


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
    from vlmdata.dedup.eval_paths import eval_set_problem

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


class Clusters:
    """The image_cluster strings, kept as one Arrow string array (no Python str per cluster until read)."""

    def __init__(self, values: Any = None) -> None:
        import pyarrow as pa

        self.values = pa.array([], pa.string()) if values is None else values

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, k: int) -> str:
        return str(self.values[k].as_py())


@dataclass
class DedupState:
    reason: Any  # (n,) uint8 code into decide.REASONS, 0 = kept
    dup_of: dict[int, str] = field(default_factory=dict)  # dropped _idx → id of the row it duplicates
    eval_set: dict[int, str] = field(default_factory=dict)  # contaminated _idx → eval set name
    cosine: dict[int, float] = field(default_factory=dict)  # semantic: dropped _idx → cosine to the row it duplicates
    cluster: Any = None  # (n,) int64 index into clusters
    clusters: Clusters = field(default_factory=Clusters)
    summary: dict[str, Any] = field(default_factory=dict)
    show: set[int] = field(default_factory=set)  # the first dropped image duplicates (by _idx): get a thumbnail


SHOWN_DUPLICATES = 12  # how many image duplicates carry a thumbnail into rejects.jsonl (for report.html)


def _u64(values: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    return pa.array(np.asarray(values, dtype=np.uint64), type=pa.uint64())


def _lists(values: Any, lengths: list[int], typ: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    offsets = pa.array(np.r_[0, np.cumsum(lengths, dtype=np.int64)].astype(np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(values, type=typ))


def _digest(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def _turns(row: Row) -> list[dict[str, Any]]:
    """A row's turns; a preference row's chosen and rejected answers count as its assistant text."""
    return [*(row.get("messages") or []), *(row.get("chosen") or []), *(row.get("rejected") or [])]


def _pair_text(row: Row) -> str:
    """For a preference row, its chosen and rejected answers: part of the (image, question) composite key,
    so two pairs on one question with different rejected answers are not duplicates."""
    if "chosen" not in row:
        return ""
    from vlmdata.schema import assistant_texts

    return "\0" + "\0".join(assistant_texts(row["chosen"]) + assistant_texts(row["rejected"]))


class DedupStep(GlobalStep):
    name: ClassVar[str] = "dedup"

    def __init__(self, *, spec: DedupSpec, seed: int, embed: EmbedStep | None = None) -> None:
        self.spec = spec
        self.seed = seed
        self.image = spec.image_hashing()  # decontamination hashes images even without dedup.images
        self.workers = spec.workers or min(4, os.cpu_count() or 1)
        self.semantic = spec.images is not None and spec.images.method == "semantic"
        if self.semantic and embed is None:
            raise ValueError("dedup.images.method semantic needs the embed stage (the recipe's `embed:`)")
        self.embed = embed if self.semantic else None
        self.hash_images = (spec.images is not None and not self.semantic) or bool(spec.against)

    def key(self, batch: list[Row]) -> dict[str, Any]:
        import numpy as np
        import pyarrow as pa

        from vlmdata.dedup.textnorm import normalize, question_text, role_text

        cols: dict[str, Any] = {"id": [r["id"] for r in batch]}
        lengths = [len(r["image_hashes"]) for r in batch]
        cols["img_sha"] = _lists([s for r in batch for s in r["image_hashes"]], lengths, pa.string())
        if self.hash_images:
            from vlmdata.dedup.phash import hash_images

            blobs = [b for r in batch for b in r["images"]]
            # in-process: `key` is a per-batch map that the engine already spreads over its workers
            cols["img_hash"] = _lists(hash_images(blobs, method=self.image.hash_method,
                                                  hash_size=self.image.hash_size, workers=1), lengths, pa.uint64())
        if self.semantic:  # one float16 vector per image, flattened per row (the embed stage made them)
            vecs = [r["image_embeddings"] for r in batch if len(r["image_embeddings"])]
            flat = np.concatenate([v.ravel() for v in vecs]) if vecs else np.zeros(0, np.float16)
            dim = vecs[0].shape[1] if vecs else 0
            cols["img_emb"] = _lists(flat.astype(np.float16), [k * dim for k in lengths], pa.float16())
        if self.spec.text is not None:
            texts = [normalize(role_text(_turns(r), list(self.spec.text.fields))) for r in batch]
            cols["text_hash"] = _u64([_digest(t) if t else 0 for t in texts])
            if self.spec.text.method == "minhash":
                from vlmdata.dedup.minhash import MinHasher

                sig = MinHasher(num_perm=self.spec.text.num_perm, shingle=self.spec.text.shingle,
                                seed=self.seed).signatures(texts)
                cols["sig"] = pa.FixedSizeListArray.from_arrays(pa.array(sig.ravel()), sig.shape[1])
        if self.spec.vqa_composite:
            cols["q_hash"] = _u64([_digest(normalize(question_text(r)) + _pair_text(r)) for r in batch])
        if self.spec.against:
            from vlmdata.dedup.shingles import word_ngrams

            grams, offsets = word_ngrams([normalize(question_text(r)) for r in batch], n=self.spec.against_ngram,
                                         short=False)
            cols["grams"] = _lists(grams, np.diff(offsets).tolist(), pa.uint64())
        return cols

    def fit(self, keys: Any) -> DedupState:
        from vlmdata.dedup.fit import fit_dedup

        embed = None
        if self.embed is not None and self.spec.against:
            embed = self.embed.blob_vectors  # eval images are embedded too: decontamination by embedding
        return fit_dedup(keys, spec=self.spec, image=self.image, seed=self.seed, workers=self.workers, embed=embed)

    def apply(self, batch: list[Row], state: DedupState) -> Iterator[Row | Reject]:
        from vlmdata.dedup.decide import REASONS

        for row in batch:
            i = row["_idx"]
            code = int(state.reason[i])
            if code:
                extra = {"duplicate_of": state.dup_of[i]}
                if i in state.cosine:
                    extra["cosine"] = state.cosine[i]
                if i in state.eval_set:
                    extra["eval_set"] = state.eval_set[i]
                if i in state.show and row.get("images"):
                    from vlmdata.output.report.html import thumbnail_uri

                    extra["thumb"] = thumbnail_uri(row["images"][0], size=160)
                reason = REASONS[code]
                yield Reject(source=row.get("source", ""), locator=(row.get("meta") or {}).get("locator", ""),
                             reason=reason, detail=f"{reason}: duplicates {extra['duplicate_of']}",
                             stage=self.name, row_id=row.get("id"), extra=extra)
                continue
            cluster = state.clusters[int(state.cluster[i])]
            row["image_cluster"] = cluster
            row["meta"] = {**(row.get("meta") or {}), "dedup": {"image_cluster": cluster}}
            yield row

    def report(self, state: DedupState) -> dict[str, Any]:
        return state.summary
