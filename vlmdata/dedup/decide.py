"""The reduce of the dedup step: from compact per-row keys to who is dropped, why, and for whom.

Each stage only looks at rows that survived the stages before it, in this order: contaminated,
duplicate_exact, duplicate_near_text, duplicate_image / duplicate_vqa. Within a stage every group
keeps its first-seen row (smallest `_idx`), so the result does not depend on batch size or workers.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from vlmdata.dedup.against import EvalSet
from vlmdata.dedup.hamming import near_pairs
from vlmdata.dedup.unionfind import components

REASONS = ("", "contaminated", "duplicate_exact", "duplicate_near_text", "duplicate_image", "duplicate_vqa")
CODE = {r: i for i, r in enumerate(REASONS)}


def first_of_groups(codes: np.ndarray, active: np.ndarray) -> np.ndarray:
    """rep (n,) int64: for active rows the smallest active index with the same code; -1 elsewhere."""
    idx = np.flatnonzero(active)
    order = idx[np.argsort(codes[idx], kind="stable")]
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
