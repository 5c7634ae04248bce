"""Perceptual hashing of 2-megapixel JPEGs from disk, decode included: ours vs imagehash.

    python benchmarks/bench_phash.py [--images 200] [--workers 2]

Baseline, measured in the same run (interleaved halves, so machine load hits both alike):
`imagehash.phash(Image.open(path))` per image in a loop. Ours: `hash_images` (JPEG draft decode +
matrix DCT) over the same files' bytes with `--workers` processes. Also: imagehash in a pool of
`--workers` processes (same process count), and a bare `Image.draft` + `load` loop (the JPEG decode
floor). Prints images/s, per-core images/s and the ratios.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def make_jpegs(folder: Path, n: int, seed: int) -> list[Path]:
    """Smooth random fields + shapes at 1632x1224 (photo-like: low-frequency content, JPEG q=90)."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        im = Image.fromarray(small).resize((1632, 1224), Image.Resampling.BICUBIC)
        draw = ImageDraw.Draw(im)
        for _ in range(6):
            x, y = rng.integers(0, 1500), rng.integers(0, 1100)
            draw.ellipse((x, y, x + rng.integers(40, 400), y + rng.integers(40, 400)),
                         fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        p = folder / f"{i:04d}.jpg"
        im.save(p, format="JPEG", quality=90)
        paths.append(p)
    return paths


def imagehash_one(path: Path) -> int:
    import imagehash
    from PIL import Image

    return int(str(imagehash.phash(Image.open(path))), 16)


def draft_load(path: Path) -> None:
    """The decode floor: JPEG draft to the smallest scale >= 32 px, then load (what any hash must pay)."""
    from PIL import Image

    with Image.open(path) as im:
        im.draft("L", (32, 32))
        im.load()


def main() -> None:
    import imagehash
    from PIL import Image

    from vlmdata.dedup.phash import hash_images

    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jpegs(Path(tmp), args.images, args.seed)
        halves = [paths[: len(paths) // 2], paths[len(paths) // 2:]]
        base_t = ours_t = 0.0
        agree = []
        for half in halves * 2:  # base, ours, base, ours over both halves
            t = time.perf_counter()
            ref = [int(str(imagehash.phash(Image.open(p))), 16) for p in half]
            base_t += time.perf_counter() - t
            t = time.perf_counter()
            got = hash_images([p.read_bytes() for p in half], method="phash", hash_size=8, workers=args.workers)
            ours_t += time.perf_counter() - t
            agree += [bin(a ^ b).count("1") for a, b in zip(ref, got.tolist(), strict=True)]
        from multiprocessing import get_context

        with get_context("spawn").Pool(args.workers) as pool:
            pool.map(imagehash_one, paths[:args.workers])  # start-up paid before timing
            t = time.perf_counter()
            pool.map(imagehash_one, paths * 2, chunksize=8)
            pool_t = time.perf_counter() - t
        t = time.perf_counter()
        for p in paths * 2:
            draft_load(p)
        draft_t = time.perf_counter() - t
        blobs = [p.read_bytes() for p in paths]
        t = time.perf_counter()
        for _ in range(2):
            hash_images(blobs, method="phash", hash_size=8, workers=1)
        one_t = time.perf_counter() - t
    n = 2 * len(paths)
    w = args.workers
    print(f"imagehash.phash pool of {w}:         {n / pool_t:8.1f} images/s  ({n / pool_t / w:7.1f} per core)")
    print(f"Image.draft + load loop (1 core, the decode floor): {n / draft_t:8.1f} images/s")
    print(f"imagehash.phash loop (baseline): {n / base_t:8.1f} images/s")
    print(f"vlmdata hash_images (workers={args.workers}): {n / ours_t:8.1f} images/s")
    print(f"vlmdata hash_images (workers=1):  {n / one_t:8.1f} images/s")
    print(f"per core: ours {n / ours_t / w:.1f} images/s with {w} workers = {(n / ours_t) / (n / pool_t):.1f}x imagehash's "
          f"pool of {w}; ours in one process {n / one_t:.1f} images/s = {base_t / one_t:.1f}x the imagehash loop "
          f"and {draft_t / one_t:.2f} of the draft+load floor")
    print(f"ratio: {base_t / ours_t:.1f}x   bits differing from imagehash: mean {np.mean(agree):.2f}, max {max(agree)}")


if __name__ == "__main__":
    main()
