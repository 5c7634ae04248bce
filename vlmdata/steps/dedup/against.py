"""Eval sets for decontamination: a saved dataset (vlmdata output or any `save_to_disk` folder) or a
folder of images, reduced to what the check needs: perceptual hashes of its images and hashed word
n-grams of its questions, each tagged with the eval row it came from.

N-grams that occur in more than half of an eval set's rows (and in more than one) are boilerplate —
a prompt suffix like "Answer the question using a single word or phrase." — and would flag every
training row that uses the same prompt, so they are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vlmdata.dedup.phash import hash_images
from vlmdata.dedup.shingles import word_ngrams
from vlmdata.dedup.textnorm import normalize, role_text
from vlmdata.steps.dedup.eval_paths import IMAGE_SUFFIXES, is_dataset


@dataclass
class EvalSet:
    name: str
    ids: list[str]  # one per eval row (or image file)
    image_hashes: np.ndarray  # (m,) uint64
    image_owner: np.ndarray  # (m,) int64 index into ids
    ngrams: np.ndarray  # (k,) uint64, boilerplate removed, unique
    ngram_owner: np.ndarray  # (k,) int64 index into ids (first row with that n-gram)
    image_vectors: np.ndarray | None = None  # (m, d) float16 unit embeddings (semantic dedup only)


_is_dataset = is_dataset


def _image_bytes(value: object) -> list[bytes]:
    items = value if isinstance(value, list) else [value]
    out = []
    for v in items:
        if isinstance(v, dict):
            if v.get("bytes"):
                out.append(v["bytes"])
            elif v.get("path"):
                out.append(Path(v["path"]).read_bytes())
        elif isinstance(v, bytes | bytearray):
            out.append(bytes(v))
    return out


def _read_dataset(path: Path) -> tuple[list[str], list[list[bytes]], list[str]]:
    import datasets

    loaded = datasets.load_from_disk(str(path))
    splits = loaded.items() if isinstance(loaded, datasets.DatasetDict) else [("", loaded)]
    ids, images, questions = [], [], []
    for split, ds in splits:
        table = ds.with_format("arrow")
        cols = set(ds.column_names)
        image_col = next((c for c in ("images", "image") if c in cols), None)
        for lo in range(0, len(ds), 512):
            part = table[lo:lo + 512]
            n = part.num_rows
            rid = part.column("id").to_pylist() if "id" in cols else [f"{split}/{lo + i}" for i in range(n)]
            ids += [str(r) for r in rid]
            imgs = part.column(image_col).to_pylist() if image_col else [None] * n
            images += [_image_bytes(v) if v is not None else [] for v in imgs]
            if "question" in cols:
                questions += [str(q or "") for q in part.column("question").to_pylist()]
            elif "messages" in cols:
                questions += [role_text(m, ["user"]) for m in part.column("messages").to_pylist()]
            else:
                questions += [""] * n
    return ids, images, questions


def _read_folder(path: Path) -> tuple[list[str], list[list[bytes]], list[str]]:
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return [str(p.relative_to(path)) for p in files], [[p.read_bytes()] for p in files], [""] * len(files)


def load_eval_set(path: Path, *, ngram: int, method: str, hash_size: int, workers: int,
                  embed: Callable[[list[bytes]], np.ndarray] | None = None) -> EvalSet:
    """Read `path` (dataset or image folder) into hashes (and `embed`'s vectors when given); raises
    ValueError if it holds nothing."""
    ids, images, questions = (_read_dataset if _is_dataset(path) else _read_folder)(path)
    if not ids:
        raise ValueError(f"dedup.against: {path} holds no rows or images")
    owner = np.repeat(np.arange(len(ids)), [len(x) for x in images])
    blobs = [b for x in images for b in x]
    hashes = hash_images(blobs, method=method, hash_size=hash_size, workers=workers)
    grams, offsets = word_ngrams([normalize(q) for q in questions], n=ngram, short=False)
    gram_owner = np.repeat(np.arange(len(ids)), np.diff(offsets))
    # rows per n-gram (an n-gram repeated inside one row counts once)
    pairs = np.unique(np.stack([grams, gram_owner.astype(np.uint64)], axis=1), axis=0) if grams.size else \
        np.empty((0, 2), np.uint64)
    uniq, first, rows = np.unique(pairs[:, 0], return_index=True, return_counts=True)
    keep = (rows <= max(1, len(ids) / 2))
    return EvalSet(name=path.name, ids=ids, image_hashes=hashes, image_owner=owner.astype(np.int64),
                   ngrams=uniq[keep], ngram_owner=pairs[first[keep], 1].astype(np.int64),
                   image_vectors=embed(blobs) if embed is not None else None)
