"""The dedup building blocks: multi-index Hamming search = brute force, union-find, MinHash-LSH,
perceptual hashes against imagehash on real photos (scikit-image's bundled ones)."""

from __future__ import annotations

import io
from collections import defaultdict

import numpy as np
import pytest
from dedup_reference import hamming_pairs

from vlmdata.dedup.hamming import near_pairs
from vlmdata.dedup.minhash import MinHasher, dedup_bands, lsh_labels
from vlmdata.dedup.phash import hash_images, image_hash
from vlmdata.dedup.shingles import word_ngrams
from vlmdata.dedup.textnorm import normalize
from vlmdata.dedup.unionfind import components


def planted_hashes(seed: int, n: int = 2000, flips: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    near = base[: n // 5].copy()
    for _ in range(flips):
        near ^= np.uint64(1) << rng.integers(0, 64, size=near.size).astype(np.uint64)
    return np.unique(np.concatenate([base, near]))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("distance", [0, 1, 2, 4, 7])
@pytest.mark.parametrize("agree", [1, 2, 3])
def test_multi_index_search_equals_brute_force(seed: int, distance: int, agree: int) -> None:
    v = planted_hashes(seed)
    got = set(zip(*near_pairs(v, max_distance=distance, agree=agree), strict=True))
    want = set(zip(*hamming_pairs(v, max_distance=distance), strict=True))
    assert got == want
    assert len(got) == len(list(zip(*near_pairs(v, max_distance=distance, agree=agree), strict=True)))  # no repeats


def test_multi_index_search_on_fewer_bits() -> None:
    v = np.unique(np.random.default_rng(5).integers(0, 2**16, size=3000, dtype=np.uint64))
    got = set(zip(*near_pairs(v, max_distance=2, bits=16), strict=True))
    assert got == set(zip(*hamming_pairs(v, max_distance=2), strict=True))


def test_union_find_is_transitive_and_labels_by_smallest_member() -> None:
    labels = components(n=8, a=np.array([6, 1, 4, 2]), b=np.array([1, 2, 3, 7]))
    assert labels.tolist() == [0, 1, 1, 3, 3, 5, 1, 1]  # 6-1, 1-2, 2-7 chain into one group led by 1
    rng = np.random.default_rng(0)
    n = 500
    a, b = rng.integers(0, n, 300), rng.integers(0, n, 300)
    adj = defaultdict(set)
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        adj[x].add(y)
        adj[y].add(x)
    labels = components(n=n, a=a, b=b)
    for start in range(n):  # BFS oracle
        seen, todo = {start}, [start]
        while todo:
            for y in adj[todo.pop()] - seen:
                seen.add(y)
                todo.append(y)
        assert labels[start] == min(seen)


def test_word_ngrams_are_position_independent_and_short_texts_optional() -> None:
    h, off = word_ngrams(["a b c d", "", "x y", "z a b c"], n=3, short=True)
    assert np.diff(off).tolist() == [2, 0, 1, 2]
    assert h[0] == h[4]  # "a b c" in text 0 and text 3
    _, off = word_ngrams(["a b c d", "x y"], n=3, short=False)
    assert np.diff(off).tolist() == [2, 0]
    assert normalize("  What's   THIS?! ") == "what s this"


def test_minhash_estimates_jaccard_and_lsh_groups_near_duplicates() -> None:
    rng = np.random.default_rng(1)
    vocab = [f"w{i}" for i in range(5000)]
    base = [" ".join(rng.choice(vocab, 40)) for _ in range(200)]
    near = []
    for t in base[:50]:
        words = t.split()
        words[rng.integers(0, 40)] = "changed"
        near.append(" ".join(words))
    texts = base + near
    mh = MinHasher(num_perm=128, shingle=3, seed=0)
    sig = mh.signatures(texts)
    assert (sig == MinHasher(num_perm=128, shingle=3, seed=0).signatures(texts)).all()
    assert (sig[:7] == mh.signatures(texts[:7])).all()  # batch-independent
    est = (sig[0] == sig[200]).mean()
    assert 0.65 < est < 1.0  # true Jaccard ≈ 35/41
    b, r = dedup_bands(threshold=0.7, num_perm=128)  # the dedup step's recall-leaning bands
    labels = lsh_labels(sig, bands=b, rows=r, threshold=0.7)
    assert labels[200:].tolist() == list(range(50))  # each near copy joins its original, the first seen
    assert (labels[:200] == np.arange(200)).all()


def photos() -> list[np.ndarray]:
    from skimage import data

    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]


def jpeg(arr: np.ndarray, size: tuple[int, int], quality: int = 90) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).convert("RGB").resize(size).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


@pytest.mark.parametrize("method", ["phash", "dhash", "ahash", "whash"])
def test_hashes_match_imagehash_on_photos(method: str) -> None:
    import imagehash
    from PIL import Image

    ref = {"phash": imagehash.phash, "dhash": imagehash.dhash, "ahash": imagehash.average_hash,
           "whash": imagehash.whash}[method]
    blobs = [jpeg(p, (816, 612)) for p in photos()]
    ours = hash_images(blobs, method=method, hash_size=8, workers=1)
    for b, h in zip(blobs, ours.tolist(), strict=True):
        theirs = int(str(ref(Image.open(io.BytesIO(b)))), 16)
        assert bin(h ^ theirs).count("1") <= 2
    assert (hash_images(blobs * 3, method=method, hash_size=8, workers=2) == np.tile(ours, 3)).all()
    assert image_hash(blobs[0], method=method, hash_size=4) < 2**16
