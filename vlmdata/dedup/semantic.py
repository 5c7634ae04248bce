"""Semantic near-duplicates (SemDeDup): k-means, then all pairs above a cosine threshold within each
cluster, then connected groups. Numpy kernels only; they know nothing of steps or rows.

Why clusters: all pairs of 10⁶ vectors is 5·10¹¹ dot products per dimension-free pair; within
√m clusters it is m·√m. A near-duplicate pair (cosine ≥ 0.95) is almost always in one cluster;
the pairs that straddle a boundary are the only misses, so each vector is also compared inside its
second-nearest cluster when that centroid is nearly as close (`spill`), which recovers them at a
small cost. The recall is measured against an exact all-pairs reference (tests/vlmdata/dedup_reference.py).

Vectors are L2-normalised float16 or float32 rows; cosine = dot product. k-means uses faiss when it
is installed (the `[embed]` extra) and a seeded numpy Lloyd otherwise; sets of at most
`ONE_CLUSTER` vectors skip k-means (one cluster = exact).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from vlmdata.dedup.unionfind import components

ONE_CLUSTER = 4096  # at most this many vectors: one cluster, i.e. the exact all-pairs answer
ROUTE_DIM = 64  # k-means and cluster assignment run on a PCA projection to this many dimensions
BLOCK = 2048  # rows per block of a similarity matrix (BLOCK² float32 = 16 MiB)
Keep = Literal["first", "easy", "hard", "random"]


@dataclass
class SemanticGroups:
    """The result over m vectors: `labels` (m,) the smallest member of each one's group; `assign` (m,)
    its k-means cluster; `centroid_cos` (m,) its cosine to that centroid; `clusters` the k used."""

    labels: np.ndarray
    assign: np.ndarray
    centroid_cos: np.ndarray
    clusters: int
    pairs: int  # pairs found at or above the threshold


def normalized(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, as float32 (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def auto_clusters(m: int) -> int:
    """`clusters: auto`: one cluster up to ONE_CLUSTER vectors, else about √m (clusters of about √m)."""
    return 1 if m <= ONE_CLUSTER else int(np.ceil(np.sqrt(m)))


def project(x: np.ndarray, *, dim: int, seed: int, sample: int = 20000) -> np.ndarray:
    """x (m, d) → (m, dim) unit rows in the top `dim` principal directions of a seeded sample.

    Clustering only routes vectors to the cluster they are compared in; a projection never pulls
    two vectors apart (it is a contraction), so near-duplicates stay near, at a fraction of the cost.
    """
    if x.shape[1] <= dim:
        return normalized(x)
    rng = np.random.default_rng(seed)
    take = rng.choice(x.shape[0], size=min(sample, x.shape[0]), replace=False)
    s = x[np.sort(take)].astype(np.float32)
    s -= s.mean(axis=0)
    _, vecs = np.linalg.eigh(s.T @ s)  # the covariance's eigenvectors, ascending
    basis = np.ascontiguousarray(vecs[:, ::-1][:, :dim])
    out = np.empty((x.shape[0], dim), np.float32)
    for lo in range(0, x.shape[0], 65536):
        out[lo:lo + 65536] = x[lo:lo + 65536].astype(np.float32) @ basis
    return normalized(out)


def _top2(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(m, 2) indices and cosines of each row's two nearest centroids (by dot product)."""
    k = centroids.shape[0]
    if k > 1:
        try:
            import faiss  # optional: fused matmul + top-k, several times numpy's argpartition
        except ImportError:
            faiss = None
        if faiss is not None:
            index = faiss.IndexFlatIP(centroids.shape[1])
            index.add(np.ascontiguousarray(centroids, dtype=np.float32))
            sim, idx = index.search(np.ascontiguousarray(x, dtype=np.float32), 2)
            return idx.astype(np.int64), sim
    idx = np.zeros((x.shape[0], 2), np.int64)
    sim = np.full((x.shape[0], 2), -np.inf, np.float32)
    for lo in range(0, x.shape[0], 65536):
        s = x[lo:lo + 65536].astype(np.float32) @ centroids.T
        if k == 1:
            idx[lo:lo + 65536, 0] = 0
            sim[lo:lo + 65536, 0] = s[:, 0]
            continue
        part = np.argpartition(-s, 1, axis=1)[:, :2]
        ps = np.take_along_axis(s, part, axis=1)
        swap = ps[:, 1] > ps[:, 0]
        part[swap] = part[swap][:, ::-1]
        ps[swap] = ps[swap][:, ::-1]
        idx[lo:lo + 65536], sim[lo:lo + 65536] = part, ps
    return idx, sim


def kmeans(x: np.ndarray, *, k: int, seed: int, iters: int = 20, sample: int = 128) -> np.ndarray:
    """(k, d) unit centroids of spherical k-means, trained on at most `sample`·k seeded rows."""
    m = x.shape[0]
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(m, size=min(m, sample * k), replace=False)) if m > sample * k else np.arange(m)
    train = np.ascontiguousarray(x[take], dtype=np.float32)
    try:
        import faiss  # optional ([embed] extra): a fast multi-threaded k-means
    except ImportError:
        faiss = None
    if faiss is not None:
        km = faiss.Kmeans(train.shape[1], k, niter=iters, seed=seed % (2 ** 31), spherical=True,
                          max_points_per_centroid=sample, verbose=False)
        km.train(train)
        return normalized(km.centroids)
    centroids = train[rng.choice(train.shape[0], size=k, replace=False)].copy()
    for _ in range(iters):
        assign = _top2(train, centroids)[0][:, 0]
        sums = np.zeros_like(centroids)
        np.add.at(sums, assign, train)
        empty = np.bincount(assign, minlength=k) == 0
        sums[empty] = train[rng.choice(train.shape[0], size=int(empty.sum()), replace=False)]
        centroids = normalized(sums)
    return centroids


def pairs_within(x: np.ndarray, members: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """All pairs of `members` (indices into x) with cosine ≥ threshold, as global index arrays."""
    out_a, out_b = [], []
    sub = x[members].astype(np.float32)
    n = members.size
    for lo in range(0, n, BLOCK):
        for hi in range(lo, n, BLOCK):
            a, b = sub[lo:lo + BLOCK], sub[hi:hi + BLOCK]
            s = a @ b.T
            if lo == hi:
                s = np.triu(s, 1)
            i, j = np.nonzero(s >= threshold)
            out_a.append(members[lo + i])
            out_b.append(members[hi + j])
    if not out_a:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(out_a), np.concatenate(out_b)


def semantic_groups(x: np.ndarray, *, threshold: float, clusters: int | None = None, seed: int = 0,
                    spill: float = 0.05) -> SemanticGroups:
    """Groups of vectors joined by cosine ≥ threshold, searched within k-means clusters.

    `clusters` None = `auto_clusters`. A vector whose second-nearest centroid is within `spill` of
    its nearest (in cosine) is compared inside that cluster too (0 disables it).
    """
    m = x.shape[0]
    if m == 0:
        e = np.empty(0, np.int64)
        return SemanticGroups(labels=e, assign=e, centroid_cos=np.empty(0, np.float32), clusters=0, pairs=0)
    x = np.ascontiguousarray(x)
    k = max(1, min(clusters or auto_clusters(m), m))
    routed = project(x, dim=ROUTE_DIM, seed=seed) if k > 1 else x
    centroids = normalized(x.astype(np.float32).mean(axis=0, keepdims=True)) if k == 1 else \
        kmeans(routed, k=k, seed=seed)
    top, sim = _top2(routed, centroids)
    assign, cos = top[:, 0], sim[:, 0]
    home = assign
    if k > 1 and spill > 0:
        extra = np.flatnonzero(sim[:, 1] >= sim[:, 0] - spill)
        home = np.concatenate([assign, top[extra, 1]])
        who = np.concatenate([np.arange(m), extra])
    else:
        who = np.arange(m)
    order = np.argsort(home, kind="stable")
    home_sorted, who_sorted = home[order], who[order]
    bounds = np.flatnonzero(np.r_[True, home_sorted[1:] != home_sorted[:-1], True])
    pa_, pb_ = [], []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        if hi - lo < 2:
            continue
        a, b = pairs_within(x, who_sorted[lo:hi], threshold)
        pa_.append(a)
        pb_.append(b)
    a = np.concatenate(pa_) if pa_ else np.empty(0, np.int64)
    b = np.concatenate(pb_) if pb_ else np.empty(0, np.int64)
    n_pairs = int(np.unique(np.minimum(a, b) * m + np.maximum(a, b)).size) if a.size else 0
    labels = components(n=m, a=a, b=b)
    return SemanticGroups(labels=labels, assign=assign, centroid_cos=cos, clusters=k, pairs=n_pairs)


def keep_rank(groups: SemanticGroups, *, keep: Keep, seed: int) -> np.ndarray:
    """(m,) int64 rank per vector, lower = kept first within its group.

    first: the first seen; easy: the most prototypical (closest to its centroid); hard: the least
    prototypical (SemDeDup's default: keeps the informative outlier); random: seeded.
    """
    m = groups.labels.size
    if keep == "first":
        score = np.arange(m, dtype=np.float64)
    elif keep == "easy":
        score = -groups.centroid_cos.astype(np.float64)
    elif keep == "hard":
        score = groups.centroid_cos.astype(np.float64)
    else:
        score = np.random.default_rng(seed).random(m)
    rank = np.empty(m, np.int64)
    rank[np.lexsort((np.arange(m), score))] = np.arange(m)
    return rank


def semantic_hits(ours: np.ndarray, theirs: np.ndarray | None, *, threshold: float) -> list[tuple[int, int, float]]:
    """(our image, their image, cosine) for each of our unit vectors whose best match in `theirs` has
    cosine ≥ threshold (blocks of 4096 rows, so memory stays bounded)."""
    if theirs is None or not theirs.size or not ours.size:
        return []
    t = theirs.astype(np.float32)
    out = []
    for lo in range(0, ours.shape[0], 4096):
        s = ours[lo:lo + 4096].astype(np.float32) @ t.T
        best = s.argmax(axis=1)
        val = s[np.arange(s.shape[0]), best]
        out += [(lo + i, int(best[i]), float(val[i])) for i in np.flatnonzero(val >= threshold).tolist()]
    return out
