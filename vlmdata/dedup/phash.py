"""Perceptual hashes (phash, dhash, ahash, whash) of encoded images, fast, packed into uint64.

Speed comes from decoding less: a JPEG is decoded by `Image.draft` straight to greyscale at 1/2–1/8
scale (libjpeg skips most of the IDCT work), so a 2-megapixel photo costs a 200×150 decode instead of
a full one plus a big resize. The DCT of phash is two small matrix products (the 8 lowest of 32
frequencies per axis), numpy only. Bits follow imagehash's order (row-major, first bit = most
significant), so `int(str(imagehash.phash(im)), 16)` is comparable; values can differ by a bit or two
because the draft decode averages pixels differently (tests/bench_neardup_quality check decisions).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

METHODS = ("phash", "dhash", "ahash", "whash")
_GRID_DECIMALS = 6  # phash coefficients reach ~2.6e5: 1e-6 is far above float64 noise, far below content


@lru_cache(maxsize=8)
def _dct_rows(size: int, keep: int) -> np.ndarray:
    """The first `keep` rows of the (unnormalised) DCT-II matrix of length `size`: (keep, size)."""
    k = np.arange(keep)[:, None]
    x = np.arange(size)[None, :]
    return np.cos(np.pi * k * (2 * x + 1) / (2 * size))


def _grey(data: bytes, side: tuple[int, int]):
    """Decode `data` as an upright greyscale PIL image, at the smallest JPEG scale >= `side`."""
    from PIL import Image, ImageOps

    im = Image.open(io.BytesIO(data))
    if im.format == "JPEG":
        im.draft("L", side)
    if im.getexif().get(0x0112, 1) not in (None, 1):
        im = ImageOps.exif_transpose(im)
    return im.convert("L")


def _pack(bits: np.ndarray) -> int:
    """Bits (row-major, first = most significant) -> int; packbits instead of a Python loop per bit."""
    flat = bits.ravel()
    return int.from_bytes(np.packbits(flat).tobytes(), "big") >> (-flat.size % 8)


def _median(values: np.ndarray) -> float:
    """np.median's value (mean of the two middle values) without its per-call overhead (~10x)."""
    flat = np.sort(values, axis=None)
    mid = flat.size // 2
    return float(flat[mid]) if flat.size % 2 else float((flat[mid - 1] + flat[mid]) / 2)


def image_hash(data: bytes, *, method: str, hash_size: int) -> int:
    """One image's hash as an int of hash_size² bits (≤ 64)."""
    from PIL import Image

    lanczos = Image.Resampling.LANCZOS
    if method == "phash":
        side = 4 * hash_size
        # draft to >= 4x the DCT input: libjpeg's 1/8 scale averages 8x8 blocks, a coarser low-pass than
        # imagehash's full-size Lanczos; from 4x, Lanczos does the rest and decisions match imagehash's
        px = np.asarray(_grey(data, (4 * side, 4 * side)).resize((side, side), lanczos), dtype=np.float64)
        d = _dct_rows(side, hash_size)
        # == scipy dct(dct(px, axis=0), axis=1)[:h, :h] / 4 (scale: irrelevant). Flat or symmetric images
        # have coefficients that are exactly 0 in exact arithmetic; left as computed, their bits would come
        # from rounding noise (~1e-10), which differs with the BLAS kernel the CPU picks at run time, so a
        # hash (and every cluster and split built on it) would change from one machine to the next.
        # Snapping to a 1e-6 grid makes those ties exact (0 > median 0 is False everywhere).
        low = np.round(d @ px @ d.T, _GRID_DECIMALS)
        return _pack(low > _median(low))
    if method == "dhash":
        px = np.asarray(_grey(data, (hash_size + 1, hash_size)).resize((hash_size + 1, hash_size), lanczos),
                        dtype=np.int16)
        return _pack(px[:, 1:] > px[:, :-1])
    if method == "ahash":
        px = np.asarray(_grey(data, (hash_size, hash_size)).resize((hash_size, hash_size), lanczos),
                        dtype=np.float64)
        return _pack(px > px.mean())
    if method == "whash":
        # Haar whash with the coarsest LL removed reduces to block means vs their median (imagehash's
        # default); 8 pixels a block keeps it a wavelet average rather than a point sample.
        side = 8 * hash_size
        px = np.asarray(_grey(data, (side, side)).resize((side, side), lanczos), dtype=np.float64)
        blocks = px.reshape(hash_size, 8, hash_size, 8).mean(axis=(1, 3))
        return _pack(blocks > _median(blocks))
    raise ValueError(f"unknown hash method {method!r} (one of {', '.join(METHODS)})")


def _hash_chunk(args: tuple[list[bytes], str, int]) -> list[int]:
    blobs, method, hash_size = args
    return [image_hash(b, method=method, hash_size=hash_size) for b in blobs]


def hash_images(blobs: Sequence[bytes], *, method: str, hash_size: int, workers: int) -> np.ndarray:
    """Hashes of many encoded images, (n,) uint64, computed by `workers` processes when it pays.

    Identical blobs are hashed once. The pool lives only for this call, so a step that calls this
    from `key` stays picklable and engine-agnostic.
    """
    if method not in METHODS:
        raise ValueError(f"unknown hash method {method!r} (one of {', '.join(METHODS)})")
    if not 2 <= hash_size <= 8:
        raise ValueError(f"hash_size must be 2..8 (hash_size² bits must fit 64), got {hash_size}")
    first: dict[bytes, int] = {}
    unique: list[bytes] = []
    where = np.empty(len(blobs), dtype=np.int64)
    for i, b in enumerate(blobs):
        j = first.setdefault(b, len(unique))
        if j == len(unique):
            unique.append(b)
        where[i] = j
    if workers <= 1 or len(unique) < 4 * workers:
        values = _hash_chunk((unique, method, hash_size))
    else:
        from concurrent.futures import ProcessPoolExecutor

        step = -(-len(unique) // (4 * workers))
        parts = [(unique[i:i + step], method, hash_size) for i in range(0, len(unique), step)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            values = [v for part in pool.map(_hash_chunk, parts) for v in part]
    return np.array(values, dtype=np.uint64)[where]
