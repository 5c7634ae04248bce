"""All pairs within Hamming distance 4 among 10⁶ 64-bit hashes (planted near-duplicate clusters).

    python benchmarks/bench_neardup.py [--n 1000000] [--base-n 100000] [--distance 4]

Ours: `near_pairs` (multi-index hashing). Recall is checked exactly against brute force for a
sample of 500 hashes (each compared with all n). Baseline 2, over the same 10⁶ hashes: faiss's
`IndexBinaryMultiHash` range search (configurations with recall 1.0 by pigeonhole). Baseline, measured in the same run: numpy brute force
in chunks (every pair, vectorised popcount) at `--base-n`, where ours is timed too for the ratio.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "vlmdata"))

from dedup_reference import hamming_pairs  # noqa: E402

from vlmdata.dedup.hamming import near_pairs, popcount  # noqa: E402


def planted(n: int, seed: int) -> np.ndarray:
    """~10% of hashes are copies of another with 1–4 random bits flipped (clusters of 2–6)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    src = rng.integers(0, n // 20, size=n // 10)
    near = base[src].copy()
    for k in range(4):
        flip = rng.random(near.size) < (1.0 if k == 0 else 0.5)
        near[flip] ^= np.uint64(1) << rng.integers(0, 64, size=int(flip.sum())).astype(np.uint64)
    base[n - near.size:] = near
    return np.unique(base)


def faiss_multihash(hashes: np.ndarray, *, d: int, tables: int, bits: int, flips: int) -> tuple[float, int]:
    """faiss IndexBinaryMultiHash range search of every hash against all: (seconds, pairs i < j).

    `tables` × (`flips` + 1) > d guarantees recall 1.0 by pigeonhole (some table's key has at most
    `flips` of the ≤ d differing bits)."""
    import faiss

    codes = np.ascontiguousarray(hashes.view(np.uint8).reshape(-1, 8))
    t = time.perf_counter()
    index = faiss.IndexBinaryMultiHash(64, tables, bits)
    index.nflip = flips
    index.add(codes)
    lims, _, ids = index.range_search(codes, d + 1)  # binary range search: distance < radius
    elapsed = time.perf_counter() - t
    owner = np.repeat(np.arange(hashes.size), np.diff(lims.astype(np.int64)))
    return elapsed, int((ids > owner).sum())


FAISS_CONFIGS = {4: [(3, 21, 1)], 8: [(3, 21, 2)]}  # 21-bit keys: buckets stay small at 10⁶


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--base-n", type=int, default=100_000)
    ap.add_argument("--distance", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    d = args.distance

    small = planted(args.base_n, args.seed + 1)
    t = time.perf_counter()
    bi, bj = hamming_pairs(small, max_distance=d)
    brute_t = time.perf_counter() - t
    t = time.perf_counter()
    oi, oj = near_pairs(small, max_distance=d)
    ours_small_t = time.perf_counter() - t
    assert set(zip(bi.tolist(), bj.tolist(), strict=True)) == set(zip(oi.tolist(), oj.tolist(), strict=True))

    big = planted(args.n, args.seed)
    t = time.perf_counter()
    i, j = near_pairs(big, max_distance=d)
    big_t = time.perf_counter() - t
    rng = np.random.default_rng(args.seed)
    sample = np.unique(np.concatenate([i[rng.integers(0, i.size, 250)], rng.integers(0, big.size, 250)]))
    found = set(zip(i.tolist(), j.tolist(), strict=True))
    want = missed = 0
    for s in sample.tolist():
        near = np.flatnonzero(popcount(big ^ big[s]) <= d)
        for o in near[near != s].tolist():
            want += 1
            missed += (min(s, o), max(s, o)) not in found
    print(f"n={big.size:,}: {i.size:,} pairs within {d} bits in {big_t:.1f} s; "
          f"recall on {sample.size} sampled hashes: {want - missed}/{want}")
    try:
        import faiss  # noqa: F401
    except ImportError:
        print("faiss not installed (pip install faiss-cpu): no multi-hash baseline")
    else:
        for tables, bits, flips in FAISS_CONFIGS.get(d, [(d + 1, 64 // (d + 1), 0)]):
            ft, fpairs = faiss_multihash(big, d=d, tables=tables, bits=bits, flips=flips)
            print(f"faiss IndexBinaryMultiHash ({tables} tables x {bits} bits, nflip {flips}): {ft:.1f} s, "
                  f"{fpairs:,} pairs (ours {i.size:,}); ratio {ft / big_t:.2f}x")
    print(f"n={small.size:,}: brute force (baseline) {brute_t:.2f} s, multi-index {ours_small_t:.3f} s, "
          f"same {bi.size:,} pairs; ratio {brute_t / ours_small_t:.0f}x")


if __name__ == "__main__":
    main()
