"""Build throughput and peak memory: a vlmdata recipe against a plain `datasets` pipeline doing the same work.

    python benchmarks/bench_build.py [--sizes 10000,50000]      # quick: --sizes 2000,10000

Data (generated, no synthesis): N/2 small PNG/JPEG images (some byte-identical copies planted under
other names), and two JSONL files of VQA rows (tasks `vqa` and `count`, 3 % exact duplicate rows),
each image used by about two questions.

- vlmdata: load (decode + verify + pixel sha) → instruct → normalize → filter → dedup (phash + VQA
  composite keys) → split (grouped by image cluster) → mix (T=2, one epoch) → write.
- baseline: `Dataset.from_generator` → `.map` (decode, verify, pixel sha, chat turns) → `.filter`
  (min side) → pandas `drop_duplicates` on the content id → `train_test_split` → `save_to_disk`.
  It splits by row, so it leaks images between train and test; the leak is counted and printed.

Each build runs in its own subprocess; peak RSS is that child's `ru_maxrss` (from `os.wait4`, the
per-child form of getrusage(RUSAGE_CHILDREN)). Streaming means the vlmdata peak stays flat as N grows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_data(root: Path, n_rows: int, seed: int = 0) -> None:
    import numpy as np
    from PIL import Image

    rnd = random.Random(seed)
    rng = np.random.default_rng(seed)
    (root / "img").mkdir(parents=True)
    n_img = max(2, n_rows // 2)
    names = []
    for i in range(n_img):
        if i > 10 and rnd.random() < 0.05:  # a planted exact copy of an earlier image, under another name
            src = names[rnd.randrange(len(names))]
            name = f"{i}{Path(src).suffix}"
            (root / "img" / name).write_bytes((root / "img" / src).read_bytes())
        else:
            px = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
            name = f"{i}.png" if i % 2 else f"{i}.jpg"
            Image.fromarray(px).save(root / "img" / name)
        names.append(name)
    files = {"vqa": (root / "vqa.jsonl").open("w"), "count": (root / "count.jsonl").open("w")}
    last = None
    for j in range(n_rows):
        task = "count" if rnd.random() < 0.1 else "vqa"
        row = {"image": f"img/{names[rnd.randrange(n_img)]}", "question": f"What is in region {j}?",
               "answers": [str(j % 7), str(j % 5)]}
        if last is not None and rnd.random() < 0.03:
            task, row = last  # a planted duplicate row
        files[task].write(json.dumps(row) + "\n")
        last = (task, row)
    for f in files.values():
        f.close()


def recipe_dict(root: Path) -> dict:
    return {
        "name": "bench", "seed": 0,
        "sources": [{"name": t, "kind": "jsonl", "path": str(root / f"{t}.jsonl"), "task": t} for t in ("vqa", "count")],
        "instruct": {"vqa": {"suffix": "Answer briefly."}, "count": {"suffix": "Answer with a number."}},
        "split": {"validation": 0.05, "test": 0.05, "group_by": "image_cluster"},
        "normalize": {"answers": "vqa"},
        "filter": [{"image_size": {"min_side": 8}}],
        "dedup": {"images": {"method": "phash", "max_distance": 4}, "vqa_composite": True},
        "mix": {"temperature": 2.0, "epochs": 1.0},
    }


def run_vlmdata(root: Path) -> None:
    import yaml

    from vlmdata.build import build
    from vlmdata.recipe import load_recipe

    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe_dict(root)))
    loaded = load_recipe(path)
    res = build(loaded, out=root / "out_vlmdata", progress=False)
    steps = [s["stage"] for s in res.manifest["stages"]]
    print(json.dumps({"rows": res.manifest["rows"], "splits": res.manifest["splits"], "steps": steps}))


def _decode(row: dict) -> dict:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(row["image"]["bytes"])) as im:
        im.load()
        rgb = im.convert("RGB")
    sha = hashlib.sha256(rgb.tobytes()).hexdigest()
    buf = io.BytesIO()
    rgb.save(buf, format="PNG")
    messages = [{"role": "user", "content": [{"type": "image", "text": None},
                                             {"type": "text", "text": row["question"] + "\nAnswer briefly."}]},
                {"role": "assistant", "content": [{"type": "text", "text": row["answers"][0]}]}]
    rid = hashlib.sha256((sha + json.dumps(messages, sort_keys=True)).encode()).hexdigest()[:32]
    return {"id": rid, "sha": sha, "width": rgb.width, "height": rgb.height, "messages": messages,
            "images": [{"bytes": buf.getvalue(), "path": None}]}


def run_datasets(root: Path) -> None:
    import datasets
    import pandas as pd

    datasets.disable_progress_bars()

    def gen():
        for task in ("vqa", "count"):
            with (root / f"{task}.jsonl").open() as f:
                for line in f:
                    r = json.loads(line)
                    data = (root / r["image"]).read_bytes()
                    yield {"task": task, "question": r["question"], "answers": r["answers"],
                           "image": {"bytes": data, "path": None}}

    cache = str(root / "hf_cache")
    features = datasets.Features({"task": datasets.Value("string"), "question": datasets.Value("string"),
                                  "answers": datasets.Sequence(datasets.Value("string")),
                                  "image": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")}})
    ds = datasets.Dataset.from_generator(gen, features=features, cache_dir=cache)
    ds = ds.map(_decode, remove_columns=["image"])
    ds = ds.filter(lambda r: min(r["width"], r["height"]) >= 8)
    keep = pd.DataFrame({"id": ds["id"]}).drop_duplicates("id").index.to_numpy()
    ds = ds.select(keep)
    dd = ds.train_test_split(test_size=0.1, seed=0)
    dd.save_to_disk(str(root / "out_datasets"))
    leak = len(set(dd["train"]["sha"]) & set(dd["test"]["sha"]))
    print(json.dumps({"rows": len(ds), "splits": {k: len(v) for k, v in dd.items()}, "leaked_images": leak}))


def measure(which: str, root: Path) -> tuple[float, float, dict]:
    """Run one build in a child process: (seconds, peak RSS in MiB, the child's JSON line)."""
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", which, "--root", str(root)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    secs = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{which} failed:\n{err[-3000:]}")
    return secs, usage.ru_maxrss / 1024, json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,50000")
    ap.add_argument("--child", choices=["vlmdata", "datasets"])
    ap.add_argument("--root")
    args = ap.parse_args()
    if args.child:
        (run_vlmdata if args.child == "vlmdata" else run_datasets)(Path(args.root))
        return
    print(f"{'rows':>7} {'pipeline':>9} {'rows/s':>8} {'peak MiB':>9}  detail")
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench_build_") as tmp:
            root = Path(tmp)
            make_data(root, n)
            results = {}
            for which in ("vlmdata", "datasets"):
                secs, rss, info = measure(which, root)
                results[which] = secs
                print(f"{n:>7} {which:>9} {n / secs:>8.0f} {rss:>9.0f}  {json.dumps(info)}")
            print(f"{n:>7} {'ratio':>9} {results['datasets'] / results['vlmdata']:>7.2f}x  (datasets time / vlmdata time)")


if __name__ == "__main__":
    main()
