"""All pairs of 64-bit hashes within a Hamming distance, without comparing all pairs.

Multi-index hashing by the pigeonhole principle: cut the hash into m = d + t bands. Two hashes that
differ in at most d bits differ in at most d bands, so they agree exactly on at least t of them. So
for every choice of t bands, a stable sort of the hashes masked to those bands puts every such pair in
one bucket; comparing each item with the one k places further (k = 1, 2, ... while some bucket still
has k + 1 members) enumerates the bucket pairs, each verified by a vectorised popcount. A pair found
under several band choices is kept at the first only, so no pair comes out twice.

t = 1 (d + 1 bands) is the textbook form, but at 10⁶ hashes and d = 4 its 13-bit buckets hold ~120
hashes each (3·10⁸ candidate pairs). t = 2 (15 choices of two 10–11-bit bands, ~21 bits a key) leaves
buckets nearly empty: 15 sorts and a few 10⁵ candidates. `_choose_t` picks t from a cost model.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

_BYTE_POP = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount(x: np.ndarray) -> np.ndarray:
    """Set bits per uint64 element (numpy 2's bitwise_count, or a byte table on numpy 1)."""
    x = np.ascontiguousarray(x, dtype=np.uint64)
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return _BYTE_POP[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1, dtype=np.uint8)


def band_masks(*, bits: int, count: int) -> list[int]:
    """Bit masks of `count` bands that tile the low `bits` bits, widths as even as possible."""
    if not 1 <= count <= bits:
        raise ValueError(f"cannot cut {bits} bits into {count} bands")
    masks, shift = [], 0
    for i in range(count):
        width = bits // count + (1 if i < bits % count else 0)
        masks.append(((1 << width) - 1) << shift)
        shift += width
    return masks


def _choose_t(n: int, d: int, bits: int) -> int:
    """Bands that must agree: trades more sorts (C(d+t, t) of them) for emptier buckets."""
    best, best_cost = 1, math.inf
    for t in (1, 2, 3):
        m = d + t
        if m > bits:
            break
        key_bits = bits * t / m
        cost = math.comb(m, t) * (n * math.log2(n + 2) + 8.0 * n * n / 2.0 ** key_bits)
        if cost < best_cost:
            best, best_cost = t, cost
    return best


def near_pairs(values: np.ndarray, *, max_distance: int, bits: int = 64,
               agree: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """All index pairs (i, j), i < j, with popcount(values[i] ^ values[j]) <= max_distance.

    `values`: (n,) uint64, pairwise distinct (np.unique them first: equal hashes are distance 0 and
    would make buckets quadratic); only the low `bits` bits are used. `agree` forces t (tests).
    Returns two int64 arrays.
    """
    values = np.ascontiguousarray(values, dtype=np.uint64)
    if bits < 64:
        values = values & np.uint64((1 << bits) - 1)
    d = max_distance
    t = agree or _choose_t(values.size, d, bits)
    masks = band_masks(bits=bits, count=min(d + t, bits))
    keys = [np.uint64(sum(masks[b] for b in c)) for c in combinations(range(len(masks)), t)]
    out_i: list[np.ndarray] = []
    out_j: list[np.ndarray] = []
    for c, mask in enumerate(keys):
        key = values & mask
        order = np.argsort(key)  # bucket order is irrelevant: pairs come out as (min, max)
        skey, sval = key[order], values[order]
        # rem[p] = members after p in its bucket (sorted order): the offsets k that p must be compared at
        starts = np.flatnonzero(np.r_[True, skey[1:] != skey[:-1]])
        ends = np.r_[starts[1:], skey.size]
        rem = np.repeat(ends, ends - starts) - np.arange(skey.size) - 1
        active = np.flatnonzero(rem > 0)
        k = 1
        while active.size:
            x = sval[active] ^ sval[active + k]
            ok = np.flatnonzero(popcount(x) <= d)
            if ok.size:
                xo = x[ok]
                first = np.ones(ok.size, dtype=bool)
                for earlier in keys[:c]:  # agreeing under an earlier band choice: found there already
                    first &= (xo & earlier) != 0
                p = active[ok[first]]
                i, j = order[p], order[p + k]
                out_i.append(np.minimum(i, j))
                out_j.append(np.maximum(i, j))
            k += 1
            active = active[rem[active] >= k]
    if not out_i:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(out_i).astype(np.int64), np.concatenate(out_j).astype(np.int64)
