"""The grouped, padded MinHash signature kernel equals the plain per-text definition, for texts of any
length (empty, shorter than a shingle, longer than a chunk) and in any order."""

from __future__ import annotations

import numpy as np
from dedup_reference import minhash_signatures

from vlmdata.dedup.minhash import EMPTY, MinHasher


def test_grouped_signatures_equal_the_definition() -> None:
    rng = np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(500)]
    lengths = [0, 1, 2, 3, 5, 40, 7000, 25, 25, 3, 0, 300] + rng.integers(1, 80, 300).tolist()
    texts = [" ".join(rng.choice(vocab, n)) for n in lengths]
    mh = MinHasher(num_perm=64, shingle=3, seed=5, chunk=512)
    sig = mh.signatures(texts)
    assert np.array_equal(sig, minhash_signatures(mh, texts))
    assert (sig[0] == EMPTY).all() and (sig[1] != EMPTY).all()
    assert np.array_equal(mh.signatures(texts[::-1]), sig[::-1])
