"""Near-duplicate image decisions on real photos: our phash vs imagehash.phash at the same threshold.

    python benchmarks/bench_neardup_quality.py [--max-distance 4]

Photos: scikit-image's bundled ones (offline). Each gets near-duplicates — resize, JPEG re-encode
(q=50), crop ≤ 5%, brightness ±10%, rotation 2° — and every photo is also a distinct image to all the
others (plus two halves of each photo, distinct from it). Over all pairs: a pair is a true duplicate
when both come from the same photo by those edits; predicted when the hashes are within the distance.
Prints precision and recall of both hashers (the baseline is imagehash.phash, same run).
"""

from __future__ import annotations

import argparse
import io
from itertools import combinations

import numpy as np

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page", "horse", "motorcycle_left",
          "hubble_deep_field", "immunohistochemistry", "retina", "cat", "brick", "grass", "gravel", "colorwheel",
          "logo", "text", "clock", "microaneurysms", "shepp_logan_phantom", "checkerboard")


def variants(im):
    from PIL import ImageEnhance

    w, h = im.size
    c = int(0.05 * min(w, h))
    return {
        "orig": im,
        "resize": im.resize((w * 2 // 3, h * 2 // 3)),
        "jpeg50": im,  # re-encoded below at q=50
        "crop5": im.crop((c, c, w - c, h - c)),
        "bright+10": ImageEnhance.Brightness(im).enhance(1.1),
        "bright-10": ImageEnhance.Brightness(im).enhance(0.9),
        "rot2": im.rotate(2, resample=3, expand=False, fillcolor=(0, 0, 0)),
    }


def load() -> tuple[list[bytes], list[str]]:
    from PIL import Image
    from skimage import data

    blobs, group = [], []
    for name in PHOTOS:
        if not hasattr(data, name):
            continue
        arr = getattr(data, name)()
        arr = arr.astype(float) if arr.dtype == bool else arr
        if arr.dtype != np.uint8:
            arr = (255 * (arr.astype(float) - arr.min()) / max(1e-9, np.ptp(arr))).astype(np.uint8)
        im = Image.fromarray(arr).convert("RGB")
        for kind, v in variants(im).items():
            buf = io.BytesIO()
            v.save(buf, format="JPEG", quality=50 if kind == "jpeg50" else 92)
            blobs.append(buf.getvalue())
            group.append(name)
        w, h = im.size
        for k, box in enumerate(((0, 0, w // 2, h), (w // 2, 0, w, h))):  # halves: different images
            buf = io.BytesIO()
            im.crop(box).save(buf, format="JPEG", quality=92)
            blobs.append(buf.getvalue())
            group.append(f"{name}/half{k}")
    return blobs, group


def score(hashes: list[int], group: list[str], d: int) -> tuple[float, float, int, int]:
    tp = fp = fn = 0
    for i, j in combinations(range(len(hashes)), 2):
        pred = bin(hashes[i] ^ hashes[j]).count("1") <= d
        true = group[i] == group[j]
        tp += pred and true
        fp += pred and not true
        fn += true and not pred
    return tp / max(1, tp + fp), tp / max(1, tp + fn), tp + fn, fp


def main() -> None:
    import imagehash
    from PIL import Image

    from vlmdata.dedup.phash import hash_images

    ap = argparse.ArgumentParser()
    ap.add_argument("--max-distance", type=int, default=4)
    args = ap.parse_args()
    blobs, group = load()
    ours = hash_images(blobs, method="phash", hash_size=8, workers=1).tolist()
    theirs = [int(str(imagehash.phash(Image.open(io.BytesIO(b)))), 16) for b in blobs]
    print(f"{len(blobs)} images from {len({g.split('/')[0] for g in group})} photos, max_distance {args.max_distance}")
    for name, hs in (("imagehash.phash (baseline)", theirs), ("vlmdata phash", ours)):
        p, r, pos, fp = score(hs, group, args.max_distance)
        print(f"{name:28s} precision {p:.3f}  recall {r:.3f}  ({pos} true pairs, {fp} false pairs)")


if __name__ == "__main__":
    main()
