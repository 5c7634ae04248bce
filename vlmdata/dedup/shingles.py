"""Word n-grams of many texts, hashed at once in numpy (no Python loop over words).

The texts are joined into one byte array. A polynomial hash with an odd base B is invertible modulo
2⁶⁴, so prefix sums of c_j·B⁻ʲ give any span's hash as (G[e] − G[s])·Bˢ in one vectorised step, the
same for the same bytes wherever they sit. Word hashes are mixed (splitmix64), then n consecutive word
hashes fold into one n-gram hash. Python's own `hash` is salted per process, so it would not do.
"""

from __future__ import annotations

import numpy as np

_B = 0x100000001B3  # FNV-64 prime, odd → invertible mod 2**64
_B_INV = pow(_B, -1, 1 << 64)
_FOLD = np.uint64(0x9E3779B97F4A7C15)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads every input bit over the output (uint64 in, uint64 out)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


_POWERS: dict[int, np.ndarray] = {}


def _powers(base: int, size: int) -> np.ndarray:
    """base⁰ … base^(size−1) mod 2⁶⁴, from a grow-only table (every batch of texts needs them)."""
    have = _POWERS.get(base)
    if have is None or have.size < size:
        p = np.full(max(size, 1 << 16, 0 if have is None else 2 * have.size), base, dtype=np.uint64)
        p[0] = 1
        have = _POWERS[base] = np.cumprod(p, dtype=np.uint64)  # wraps mod 2**64, as wanted
    return have[:size]


def word_ngrams(texts: list[str], *, n: int, short: bool) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every run of `n` words of each (already normalised, space-separated) text.

    Returns (hashes uint64 (M,), offsets int64 (len(texts) + 1,)): text t owns
    hashes[offsets[t]:offsets[t + 1]], in word order. A text with fewer than n words gets one hash of
    all its words when `short` (MinHash: every text has a signature) and none otherwise (an 8-gram
    overlap test must not fire on a 3-word question). An empty text gets none.
    """
    data = np.frombuffer("\n".join(texts).encode("utf-8"), dtype=np.uint8)
    sep = (data == 32) | (data == 10)
    starts = np.flatnonzero(~sep & np.r_[True, sep[:-1]])
    ends = np.flatnonzero(~sep & np.r_[sep[1:], True]) + 1
    text_of_word = np.cumsum(data == 10)[starts] if starts.size else np.empty(0, np.int64)
    counts = np.bincount(text_of_word, minlength=len(texts)).astype(np.int64)
    first = np.r_[0, np.cumsum(counts)[:-1]]

    prefix = np.r_[np.uint64(0), np.cumsum((data.astype(np.uint64) + np.uint64(1)) * _powers(_B_INV, data.size),
                                          dtype=np.uint64)]
    words = mix64((prefix[ends] - prefix[starts]) * _powers(_B, data.size)[starts])

    pos = np.arange(words.size) - first[text_of_word]
    have = counts[text_of_word]
    begin = (pos + n <= have) | ((pos == 0) & (have < n) & short)
    w = np.flatnonzero(begin)
    acc = np.zeros(w.size, dtype=np.uint64)
    for j in range(n):
        inside = pos[w] + j < have[w]
        nxt = words[np.minimum(w + j, max(words.size - 1, 0))]
        acc = np.where(inside, acc * _FOLD + nxt, acc)
    per_text = np.bincount(text_of_word[w], minlength=len(texts)) if w.size else np.zeros(len(texts), np.int64)
    return mix64(acc ^ np.uint64(n)), np.r_[0, np.cumsum(per_text)].astype(np.int64)
