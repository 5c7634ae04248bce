"""The reduce of the dedup step: from compact per-row keys to who is dropped, why, and for whom.

Each stage only looks at rows that survived the stages before it, in this order: contaminated,
duplicate_exact, duplicate_near_text, duplicate_image / duplicate_vqa. Within a stage every group
keeps its first-seen row (smallest `_idx`), so the result does not depend on batch size or workers.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from vlmdata.dedup.hamming import near_pairs
from vlmdata.dedup.unionfind import components
from vlmdata.steps.dedup.against import EvalSet

REASONS = ("", "contaminated", "duplicate_exact", "duplicate_near_text", "duplicate_image", "duplicate_vqa")
CODE = {r: i for i, r in enumerate(REASONS)}


def first_of_groups(codes: np.ndarray, active: np.ndarray, rank: np.ndarray | None = None) -> np.ndarray:
    """rep (n,) int64: for active rows the smallest active index with the same code; -1 elsewhere.

    With `rank` (n,) the active row of lowest rank (ties: smallest index) represents its group instead.
    """
    idx = np.flatnonzero(active)
    order = idx[np.argsort(codes[idx], kind="stable")] if rank is None else idx[np.lexsort((idx, rank[idx], codes[idx]))]
    sc = codes[order]
    head = np.r_[True, sc[1:] != sc[:-1]] if sc.size else np.empty(0, bool)
    rep = np.full(codes.shape[0], -1, dtype=np.int64)
    rep[order] = order[np.flatnonzero(head)[np.cumsum(head) - 1]]
    return rep


def codes_of(keys: Sequence[Hashable | None]) -> tuple[np.ndarray, np.ndarray]:
    """Hashable keys → (int codes, has_key mask); None means "no key" (never a duplicate)."""
    seen: dict[Hashable, int] = {}
    codes = np.array([-1 if k is None else seen.setdefault(k, len(seen)) for k in keys], dtype=np.int64)
    return codes, codes >= 0


_MUL = np.uint64(0x9E3779B97F4A7C15)  # a large odd multiplier (2^64 / golden ratio)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wraps mod 2^64)."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def sequence_groups(rep: np.ndarray, offsets: np.ndarray,
                    extra: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rows as ordered sequences of ints (rep[offsets[r]:offsets[r + 1]], plus extra[r] when given) → (codes, has).

    Rows with equal sequences (and equal extra) get equal codes; empty rows have no key (has False).
    Same grouping as `codes_of` over the tuples, without a Python object per row: a uint64 hash of
    each sequence (order matters), checked against each group's first row, with `codes_of` as the
    fallback should two different sequences ever share a hash.
    """
    n = offsets.size - 1
    lengths = np.diff(offsets)
    has = lengths > 0
    codes = np.zeros(n, dtype=np.uint64)
    if not has.any():
        return codes, has
    starts = offsets[:-1]
    pos = (np.arange(int(offsets[-1]), dtype=np.int64) - np.repeat(starts, lengths)).astype(np.uint64)
    with np.errstate(over="ignore"):
        terms = rep.astype(np.uint64) * np.power(_MUL, pos)
        h = np.add.reduceat(terms, starts[has]) if terms.size else np.zeros(0, np.uint64)
        h = _mix(h ^ _mix(lengths[has].astype(np.uint64)))
        if extra is not None:
            h = _mix(h ^ (extra[has].astype(np.uint64) * _MUL))
    codes[has] = h
    # exactness: every row must equal its group's first row, element for element
    first = first_of_groups(codes, has)
    rows = np.flatnonzero(has)
    f = first[rows]
    ok = np.array_equal(lengths[rows], lengths[f]) and (extra is None or np.array_equal(extra[rows], extra[f]))
    if ok:
        shift = np.repeat(offsets[first[has]] - starts[has], lengths[has])
        j = np.arange(int(offsets[-1]), dtype=np.int64)
        ok = np.array_equal(rep, rep[j + shift])
    if ok:
        return codes, has
    keys = [tuple(rep[starts[r]:starts[r] + lengths[r]].tolist()) if lengths[r] else None for r in range(n)]
    if extra is not None:
        keys = [None if k is None else (k, int(extra[r])) for r, k in enumerate(keys)]
    return codes_of(keys)


def image_clusters(hashes: np.ndarray, *, max_distance: int,
                   evals: Sequence[EvalSet]) -> tuple[np.ndarray, np.ndarray]:
    """One near-duplicate search over our images and every eval set's images together.

    Returns (rep (m,) int64: our smallest image index of each image's cluster — chains through eval
    images do not join ours; hit (m,) int64: the index of some eval image within max_distance, into
    the concatenation of the eval sets' images, or -1).
    """
    theirs = [e.image_hashes for e in evals]
    every = np.concatenate([hashes, *theirs]) if theirs else hashes
    uniq, inv = np.unique(every, return_inverse=True)
    inv = inv.ravel()
    m = hashes.size
    p, q = near_pairs(uniq, max_distance=max_distance)
    ours_u = np.zeros(uniq.size, dtype=bool)
    ours_u[inv[:m]] = True
    keep = ours_u[p] & ours_u[q]
    labels = components(n=uniq.size, a=p[keep], b=q[keep])
    rep_u = np.full(uniq.size, m, dtype=np.int64)
    np.minimum.at(rep_u, labels[inv[:m]], np.arange(m))
    rep = rep_u[labels[inv[:m]]]

    eval_u = np.full(uniq.size, -1, dtype=np.int64)
    eval_u[inv[m:][::-1]] = np.arange(every.size - m)[::-1]  # first eval image per unique value
    hit_u = eval_u.copy()
    for a, b in ((p, q), (q, p)):
        take = (hit_u[a] < 0) & (eval_u[b] >= 0)
        hit_u[a[take]] = eval_u[b[take]]
    return rep, hit_u[inv[:m]]


def gram_hits(grams: np.ndarray, owner: np.ndarray, n_rows: int, ev: EvalSet) -> np.ndarray:
    """Per row, the eval row index of one shared n-gram, or -1."""
    hit = np.full(n_rows, -1, dtype=np.int64)
    if not grams.size or not ev.ngrams.size:
        return hit
    pos = np.searchsorted(ev.ngrams, grams).clip(max=ev.ngrams.size - 1)
    found = ev.ngrams[pos] == grams
    hit[owner[found][::-1]] = ev.ngram_owner[pos[found]][::-1]
    return hit
