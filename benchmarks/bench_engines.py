"""Engines side by side: the bench_build recipe (load → instruct → normalize / filter / dedup → split → mix
→ write) on the local engine with 1 and 2 worker processes and on a local Ray (Ray Data).

    python benchmarks/bench_engines.py [--rows 50000] [--cpus 2]

Each build runs in its own subprocess on the same generated data (bench_build.make_data). Ray's time is
given with and without `ray.init` (a cluster is already up). The outputs are checked to be identical
(ids per split, manifest funnel), so the rows/s compare the same work.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_build import make_data, recipe_dict  # noqa: E402

CONFIGS = {"local-1": ("local", 1), "local-2": ("local", 2), "ray": ("ray", None)}


def child(which: str, root: Path, cpus: int) -> None:
    import yaml

    from vlmdata.build import build
    from vlmdata.recipe import load_recipe

    kind, workers = CONFIGS[which]
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe_dict(root)))
    loaded = load_recipe(path)
    init = 0.0
    if kind == "ray":
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
        init = time.perf_counter() - t
    extra = {"workers": workers} if workers else {}
    t = time.perf_counter()
    res = build(loaded, out=root / f"out_{which}", progress=False, engine=kind, **extra)
    secs = time.perf_counter() - t
    print(json.dumps({"build_s": secs, "init_s": init, "rows": res.manifest["rows"], "splits": res.manifest["splits"],
                      "stages": res.manifest["stages"]}))


def same_output(root: Path, a: str, b: str) -> bool:
    import datasets

    da, db = datasets.load_from_disk(str(root / f"out_{a}")), datasets.load_from_disk(str(root / f"out_{b}"))
    return list(da) == list(db) and all(da[s]["id"] == db[s]["id"] for s in da)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=50000)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs for the local Ray")
    ap.add_argument("--child", choices=list(CONFIGS))
    ap.add_argument("--root")
    args = ap.parse_args()
    if args.child:
        child(args.child, Path(args.root), args.cpus)
        return
    with tempfile.TemporaryDirectory(prefix="bench_engines_") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        make_data(root, args.rows)
        print(f"data: {args.rows} rows in {time.perf_counter() - t:.0f} s")
        results = {}
        for which in CONFIGS:
            t = time.perf_counter()
            proc = subprocess.run([sys.executable, __file__, "--child", which, "--root", str(root), "--cpus",
                                   str(args.cpus)], capture_output=True, text=True)
            wall = time.perf_counter() - t
            if proc.returncode:
                raise SystemExit(f"{which} failed:\n{proc.stderr[-3000:]}")
            info = json.loads(proc.stdout.strip().splitlines()[-1])
            results[which] = info
            print(f"{which:>8}: build {info['build_s']:6.1f} s = {args.rows / info['build_s']:6.0f} rows/s"
                  f"  (+ ray.init {info['init_s']:.1f} s; process wall {wall:.1f} s)  rows={info['rows']}")
        base = results["local-1"]["build_s"]
        for which, info in results.items():
            print(f"{which:>8}: {base / info['build_s']:.2f}x local-1 rows/s")
        same = all(same_output(root, "local-1", w) and results[w]["stages"] == results["local-1"]["stages"]
                   for w in CONFIGS)
        print(f"identical ids, splits and funnel on every engine: {same}")


if __name__ == "__main__":
    main()
