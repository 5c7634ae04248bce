"""Brute-force references for the dedup kernels: the tests' oracles and the benchmarks' baselines.

They compare everything with everything, so they are slow by design and live here, outside the package.
"""

from __future__ import annotations

import numpy as np

from vlmdata.dedup.hamming import popcount
from vlmdata.dedup.minhash import EMPTY, MinHasher
from vlmdata.dedup.semantic import BLOCK
from vlmdata.dedup.shingles import word_ngrams


def hamming_pairs(values: np.ndarray, *, max_distance: int, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """`near_pairs`' pairs (i < j within max_distance bits) by comparing everything, in chunks."""
    values = np.ascontiguousarray(values, dtype=np.uint64)
    out_i, out_j = [], []
    for lo in range(0, values.size, chunk):
        block = values[lo:lo + chunk]
        dist = popcount(block[:, None] ^ values[None, lo:])
        i, j = np.nonzero(dist <= max_distance)
        keep = j > i  # j counts from lo as well
        out_i.append(i[keep] + lo)
        out_j.append(j[keep] + lo)
    if not out_i:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(out_i).astype(np.int64), np.concatenate(out_j).astype(np.int64)


def cosine_pairs(x: np.ndarray, *, threshold: float, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The exact reference: pairs (i, j), i in `rows` (default all), j any other vector, cos ≥ threshold."""
    x = np.asarray(x, dtype=np.float32)
    rows = np.arange(x.shape[0]) if rows is None else np.asarray(rows)
    out_a, out_b = [], []
    for lo in range(0, rows.size, BLOCK):
        q = rows[lo:lo + BLOCK]
        for hi in range(0, x.shape[0], 65536):
            s = x[q] @ x[hi:hi + 65536].T
            i, j = np.nonzero(s >= threshold)
            j = j + hi
            keep = q[i] != j
            out_a.append(q[i][keep])
            out_b.append(j[keep])
    if not out_a:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(out_a), np.concatenate(out_b)


def pair_recall(groups_labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Share of reference pairs (a[i], b[i]) that the grouping put in one group (1.0 without pairs)."""
    if a.size == 0:
        return 1.0
    return float(np.mean(groups_labels[a] == groups_labels[b]))


def minhash_signatures(hasher: MinHasher, texts: list[str]) -> np.ndarray:
    """`MinHasher.signatures` by the plain definition: per text, the minimum over its shingles."""
    hashes, offsets = word_ngrams(texts, n=hasher.shingle, short=True)
    x = (hashes >> np.uint64(32)).astype(np.uint32)
    sig = np.full((len(texts), hasher.num_perm), EMPTY, dtype=np.uint32)
    for t in range(len(texts)):
        part = x[offsets[t]:offsets[t + 1]]
        if part.size:
            sig[t] = np.multiply(part[:, None], hasher.a[None, :]).min(axis=0)
    return sig
