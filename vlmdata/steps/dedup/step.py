"""The dedup step: `key` hashes each batch, `fit` decides for all rows at once, `apply` rejects or tags.

Keys are compact columns (text signatures, perceptual hashes; no image bytes). The decision is
`fit_dedup` (fit.py, with the stage order and first-seen rule of decide.py). Every kept row gets
`image_cluster` (the pixel sha of its first image's cluster representative, "" without images) so
the split step can keep near-duplicate images in one split.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np

from vlmdata.dedup.minhash import MinHasher
from vlmdata.dedup.phash import hash_images
from vlmdata.dedup.shingles import word_ngrams
from vlmdata.dedup.textnorm import normalize, question_text, role_text
from vlmdata.embed.step import EmbedStep
from vlmdata.media.thumbnails import thumbnail_uri
from vlmdata.rows import Reject
from vlmdata.schema import assistant_texts
from vlmdata.steps.base import GlobalStep, Row
from vlmdata.steps.dedup.decide import REASONS
from vlmdata.steps.dedup.spec import DedupSpec
from vlmdata.steps.dedup.state import DedupState


def _u64(values: Any) -> Any:
    import pyarrow as pa  # here, not at the top: `vlmdata validate` builds the plan (this step) without pyarrow

    return pa.array(np.asarray(values, dtype=np.uint64), type=pa.uint64())


def _lists(values: Any, lengths: list[int], typ: Any) -> Any:
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
        import pyarrow as pa

        cols: dict[str, Any] = {"id": [r["id"] for r in batch]}
        lengths = [len(r["image_hashes"]) for r in batch]
        cols["img_sha"] = _lists([s for r in batch for s in r["image_hashes"]], lengths, pa.string())
        if self.hash_images:
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
                sig = MinHasher(num_perm=self.spec.text.num_perm, shingle=self.spec.text.shingle,
                                seed=self.seed).signatures(texts)
                cols["sig"] = pa.FixedSizeListArray.from_arrays(pa.array(sig.ravel()), sig.shape[1])
        if self.spec.vqa_composite:
            cols["q_hash"] = _u64([_digest(normalize(question_text(r)) + _pair_text(r)) for r in batch])
        if self.spec.against:
            grams, offsets = word_ngrams([normalize(question_text(r)) for r in batch], n=self.spec.against_ngram,
                                         short=False)
            cols["grams"] = _lists(grams, np.diff(offsets).tolist(), pa.uint64())
        return cols

    def fit(self, keys: Any) -> DedupState:
        # here, not at the top: fit.py brings pyarrow, and `vlmdata validate` builds the plan without it
        from vlmdata.steps.dedup.fit import fit_dedup

        embed = None
        if self.embed is not None and self.spec.against:
            embed = self.embed.blob_vectors  # eval images are embedded too: decontamination by embedding
        return fit_dedup(keys, spec=self.spec, seed=self.seed, workers=self.workers, embed=embed)

    def apply(self, batch: list[Row], state: DedupState) -> Iterator[Row | Reject]:
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
