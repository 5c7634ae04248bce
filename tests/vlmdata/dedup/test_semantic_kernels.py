"""SemDeDup kernels (numpy/faiss, no model): recall against brute force, exactness of one cluster,
keep rules and determinism under the seed."""

from __future__ import annotations

import numpy as np
import pytest
from dedup_reference import cosine_pairs, pair_recall

from vlmdata.dedup.semantic import keep_rank, semantic_groups
from vlmdata.dedup.unionfind import components


def clustered(n: int, dim: int = 64, topics: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((topics, dim))
    x = centres[rng.integers(0, topics, n)] + rng.standard_normal((n, dim)) * 0.8
    dups = np.flatnonzero(rng.random(n) < 0.15)[1:]
    src = (rng.random(dups.size) * dups).astype(int)
    x[dups] = x[src] + rng.standard_normal((dups.size, dim)) * 0.08
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16)


def test_one_cluster_is_exactly_brute_force() -> None:
    x = clustered(1500)
    g = semantic_groups(x, threshold=0.95, clusters=1)
    a, b = cosine_pairs(x, threshold=0.95)
    assert a.size > 100  # planted pairs exist
    assert np.array_equal(g.labels, components(n=x.shape[0], a=a, b=b))


@pytest.mark.parametrize("clusters", [16, 64])
def test_recall_against_brute_force_with_clusters(clusters: int) -> None:
    x = clustered(8000)
    g = semantic_groups(x, threshold=0.95, clusters=clusters, seed=3)
    assert g.clusters == clusters
    rows = np.random.default_rng(1).choice(x.shape[0], size=800, replace=False)
    a, b = cosine_pairs(x, threshold=0.95, rows=rows)
    assert a.size > 50
    assert pair_recall(g.labels, a, b) >= 0.95
    # precision: every pair the search joined directly is a real pair; groups only chain real pairs
    s = (x.astype(np.float32) @ x.astype(np.float32).T)
    joined = np.flatnonzero(g.labels != np.arange(x.shape[0]))
    best = np.where(np.eye(x.shape[0], dtype=bool), -1, s)[joined].max(axis=1)
    assert (best >= 0.95 - 1e-3).all()


def test_same_seed_same_groups_other_seed_same_recall() -> None:
    x = clustered(6000, seed=2)
    one = semantic_groups(x, threshold=0.95, clusters=32, seed=7)
    two = semantic_groups(x, threshold=0.95, clusters=32, seed=7)
    assert np.array_equal(one.labels, two.labels) and np.array_equal(one.assign, two.assign)


def test_keep_rules() -> None:
    x = clustered(3000, seed=4)
    g = semantic_groups(x, threshold=0.95, clusters=1)
    first = keep_rank(g, keep="first", seed=0)
    assert np.array_equal(first, np.arange(x.shape[0]))
    easy, hard = keep_rank(g, keep="easy", seed=0), keep_rank(g, keep="hard", seed=0)
    group = g.labels[np.flatnonzero(g.labels != np.arange(x.shape[0]))[0]]
    members = np.flatnonzero(g.labels == group)
    cos = g.centroid_cos[members]
    assert members[np.argmin(easy[members])] == members[np.argmax(cos)]
    assert members[np.argmin(hard[members])] == members[np.argmin(cos)]
    r1, r2, r3 = (keep_rank(g, keep="random", seed=s) for s in (5, 5, 6))
    assert np.array_equal(r1, r2) and not np.array_equal(r1, r3)
