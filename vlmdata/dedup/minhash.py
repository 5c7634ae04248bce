"""MinHash signatures and LSH banding, vectorised over whole batches of texts.

Signature: for each of `num_perm` hash functions h_k, the minimum of h_k over a text's shingles; two
texts agree on a position with probability equal to their Jaccard similarity. h_k is a random
multiplicative bijection of the 32-bit shingle hash, h(x) = a·x mod 2³² with odd a: the shingle hashes
are already well mixed (splitmix64), so the permutations only have to differ, and one uint32 multiply
per (shingle, permutation) is the whole cost; an added offset b (a·x + b) costs a second pass over the
buffer and measured no better (bench_minhash, J >= 0.8: precision 0.668 / recall 0.726 without it,
0.646 / 0.710 with it). One (texts × shingles × num_perm) uint32 multiply and a `min` give every
signature of a group of texts at once.

LSH: `bands` bands of `rows` positions; texts equal on a whole band become candidates (probability
1 − (1 − J^rows)^bands). Each candidate is checked against the first-seen text of its bucket by the
fraction of agreeing positions, which removes most of the S-curve's false positives that plain LSH
keeps; so dedup picks bands × rows that lean to recall (`dedup_bands`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from vlmdata.dedup.shingles import _FOLD, mix64, word_ngrams
from vlmdata.dedup.unionfind import components

EMPTY = np.uint32(0xFFFFFFFF)  # the signature value of a text with no shingles
_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 1 spells it trapz


VERIFY_Z = 0.0  # a candidate passes at threshold − VERIFY_Z standard errors of the signature estimate
FALSE_NEGATIVE_WEIGHT = 0.95  # dedup's banding: see `dedup_bands`


def dedup_bands(*, threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) for dedup: the S-curve weighted 95 : 5 against false negatives.

    Every candidate is verified against its signature (`lsh_labels`), so a false positive of the banding
    costs one comparison, while a false negative is a duplicate missed for good. At threshold 0.8 and
    128 permutations this is 16 × 8 (P[candidate | J=0.8] = 0.95) instead of the balanced 9 × 13 (0.40),
    which is where datasketch's recall stops (benchmarks/bench_minhash.py).
    """
    return optimal_bands(threshold=threshold, num_perm=num_perm, false_negative_weight=FALSE_NEGATIVE_WEIGHT)


@lru_cache(maxsize=64)
def optimal_bands(*, threshold: float, num_perm: int, false_negative_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) minimising weighted false positives + false negatives around `threshold`.

    With the default equal weights this is datasketch's MinHashLSH criterion (the same S-curve for the
    same settings).
    """
    w_fn = false_negative_weight
    xs = np.linspace(0.0, 1.0, 1001)
    best, best_err = (1, num_perm), np.inf
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            p = 1.0 - (1.0 - xs ** r) ** b
            below, above = xs <= threshold, xs >= threshold
            fp = _trapezoid(p[below], xs[below]) if below.sum() > 1 else 0.0
            fn = _trapezoid(1.0 - p[above], xs[above]) if above.sum() > 1 else 0.0
            err = (1.0 - w_fn) * fp + w_fn * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best


class MinHasher:
    """Signatures of normalised texts: (n, num_perm) uint32. Same seed → same signatures anywhere."""

    def __init__(self, *, num_perm: int, shingle: int, seed: int, chunk: int = 2048) -> None:
        if num_perm < 1 or shingle < 1:
            raise ValueError(f"num_perm and shingle must be >= 1, got {num_perm}, {shingle}")
        rng = np.random.default_rng([seed, 0x6D68])
        self.a = rng.integers(0, 2**32, size=num_perm, dtype=np.uint32, endpoint=False) | np.uint32(1)
        self.num_perm = num_perm
        self.shingle = shingle
        self.chunk = chunk  # shingles per multiply: keeps the (chunk × num_perm) buffer in cache

    def signatures(self, texts: list[str]) -> np.ndarray:
        """Texts are grouped by shingle count (sorted), each group padded to its longest text by
        repeating a text's first shingle (which leaves every minimum unchanged), so one (texts × shingles
        × num_perm) multiply-add and a `min` over the shingle axis give the group's signatures: about
        5× faster than `minimum.reduceat` over ragged rows."""
        hashes, offsets = word_ngrams(texts, n=self.shingle, short=True)
        x = (hashes >> np.uint64(32)).astype(np.uint32)
        sig = np.full((len(texts), self.num_perm), EMPTY, dtype=np.uint32)
        counts = np.diff(offsets)
        order = np.argsort(counts, kind="stable")
        order = order[counts[order] > 0]
        i = 0
        while i < order.size:
            j = min(order.size, i + max(1, self.chunk // int(counts[order[i]])))
            while j > i + 1 and int(counts[order[j - 1]]) * (j - i) > self.chunk:
                j = i + max(1, self.chunk // int(counts[order[j - 1]]))
            rows = order[i:j]
            width = int(counts[rows[-1]])
            idx = offsets[rows][:, None] + np.minimum(np.arange(width)[None, :], counts[rows][:, None] - 1)
            sig[rows] = np.multiply(x[idx][:, :, None], self.a[None, None, :]).min(axis=1)
            i = j
        return sig


def band_keys(sig: np.ndarray, *, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: one hash per band of `rows` signature positions.

    Two uint32 positions are read as one uint64 word where a band has an even number of rows, and
    words fold in with one xor-multiply each, then one splitmix finaliser per band: equal bands always
    get equal keys; unequal ones rarely collide, and a collision only adds a candidate that the
    signature check then rejects.
    """
    n = sig.shape[0]
    even = rows % 2 == 0
    used = sig[:, :bands * rows]
    words = (np.ascontiguousarray(used).view(np.uint64) if even else used.astype(np.uint64))
    per = rows // 2 if even else rows
    words = words.reshape(n, bands, per)  # a row's bands side by side: every pass reads memory in order
    acc = np.broadcast_to(np.arange(1, bands + 1, dtype=np.uint64), (n, bands)).copy()
    with np.errstate(over="ignore"):
        for col in range(per):
            acc ^= words[:, :, col]
            acc *= _FOLD
    return mix64(acc)


def lsh_labels(sig: np.ndarray, *, bands: int, rows: int, threshold: float,
               active: np.ndarray | None = None) -> np.ndarray:
    """Near-duplicate groups: labels (n,) int64, the smallest row index of each row's group.

    Only rows in `active` (bool (n,), default all) take part; a text with no shingles never matches.
    A candidate joins its bucket's first row when their signatures agree on at least the threshold's
    share of positions (less `VERIFY_Z` standard errors of the estimate; 0: none), so pairs below the
    threshold, which a recall-leaning S-curve (`dedup_bands`) lets through in numbers, are removed,
    and precision stays at least rensa's at a recall well above it. Measured against exact Jaccard
    (bench_minhash, J >= 0.8, 16 × 8): 0 standard errors gives precision 0.67 / recall 0.73 (rensa:
    0.64 / 0.42); 0.5 gave 0.57 / 0.82 and 2 gave 0.48 / 0.92 with the earlier a·x + b hash.
    """
    n = sig.shape[0]
    live = np.ones(n, dtype=bool) if active is None else active.copy()
    live &= sig[:, 0] != EMPTY
    idx = np.flatnonzero(live)
    if idx.size < 2:
        return np.arange(n, dtype=np.int64)
    keys = np.ascontiguousarray(band_keys(sig if idx.size == n else sig[idx], bands=bands, rows=rows).T)
    cand_a, cand_b = [], []
    for band in range(bands):
        order = np.argsort(keys[band], kind="stable")
        k = keys[band][order]
        head = np.r_[True, k[1:] != k[:-1]]
        first = order[np.flatnonzero(head)[np.cumsum(head) - 1]]  # stable: smallest index of the bucket
        dup = first != order
        cand_a.append(idx[order[dup]])
        cand_b.append(idx[first[dup]])
    a = np.concatenate(cand_a) if cand_a else np.empty(0, np.int64)
    b = np.concatenate(cand_b) if cand_b else np.empty(0, np.int64)
    if a.size:
        code = np.unique(a.astype(np.int64) * n + b)
        a, b = code // n, code % n
        agree = np.empty(a.size, dtype=np.float64)
        for lo in range(0, a.size, 65536):
            sl = slice(lo, lo + 65536)
            agree[sl] = (sig[a[sl]] == sig[b[sl]]).mean(axis=1)
        ok = agree >= threshold - VERIFY_Z * np.sqrt(threshold * (1.0 - threshold) / sig.shape[1])
        a, b = a[ok], b[ok]
    return components(n=n, a=a, b=b)
