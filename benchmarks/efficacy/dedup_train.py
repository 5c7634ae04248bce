"""Does training on the semantically deduplicated shapes world cost accuracy? LoRA on the full
recipes/shapes-neardup.yaml world and on its `dedup.images: {method: semantic}` build, same steps and
seeds (the efficacy benchmark's quick protocol), scored on the same held-out rows.

    python benchmarks/efficacy/dedup_train.py                 # after dedup.py (it reuses its CLIP and base)
    python benchmarks/efficacy/dedup_train.py --threshold 0.99 0.97 --steps 120 --seeds 0 1 2

Held-out rows: the same world at another source seed (99), without planted copies, so neither
training set has seen them. The result table joins dedup.py's section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dedup  # noqa: E402
import experiments  # noqa: E402
import run  # noqa: E402
from setup import RECIPES, ROOT, build_datasets, pretrain_base  # noqa: E402


def _build(*, out: Path, overrides: list[str]) -> Path:
    from vlmdata.build import build
    from vlmdata.recipe import load_recipe

    if not (out / "dataset_dict.json").is_file():
        build(load_recipe(RECIPES / "shapes-neardup.yaml", overrides=overrides), out=out, progress=False)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "efficacy-dedup", help="dedup.py's work folder")
    parser.add_argument("--threshold", type=float, nargs="+", default=[0.99, 0.97], help="semantic dedup cosines")
    parser.add_argument("--rows-per-task", type=int, default=dedup.SIZES["full"]["rows_per_task"])
    parser.add_argument("--steps", type=int, default=120, help="LoRA steps (the quick protocol's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--limit", type=int, default=60, help="held-out rows per task")
    parser.add_argument("--clip", default="shapes-clip",
                        help="the embedding model's folder in WORK (dedup.py trains shapes-clip and shapes-clip-long)")
    parser.add_argument("--composite", action="store_true",
                        help="dedup.vqa_composite: a row is a duplicate only with the same image AND question")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # see shapes_clip.py: two threads spin against other jobs on a shared box
    work = args.out.resolve()
    started = time.time()
    clip = work / args.clip
    if not (clip / "config.json").is_file():
        raise SystemExit(f"{clip} missing: run benchmarks/efficacy/dedup.py first (it trains the embedding model)")
    if not (work / "base" / "config.json").is_file():
        build_datasets(work=work, overrides={}, names=("shapes-pretrain",))
    # the full benchmark's base (1000 caption steps), as run.py makes it
    base = pretrain_base(work=work, data=work / "data" / "shapes-pretrain", steps=run.SIZES["full"]["pretrain"],
                         echo=lambda _: None)
    n = f"sources.0.count={args.rows_per_task}"
    full = _build(out=work / "data" / "neardup-full", overrides=[n])
    tag = ("-composite" if args.composite else "") + ("" if args.clip == "shapes-clip" else f"-{args.clip}")
    deduped = {t: _build(out=work / "data" / f"neardup-semantic-{t:g}{tag}", overrides=[
        n, f"embed={{model: {clip}, batch_size: 256}}", f"dedup.images={{method: semantic, threshold: {t}}}",
        *(["dedup.vqa_composite=true"] if args.composite else [])]) for t in args.threshold}
    held = _build(out=work / "data" / "heldout", overrides=[
        f"sources.0.count={2 * args.limit}", "sources.0.seed=99", "sources.0.near_duplicates=null",
        "split={validation: 0.5}"])
    rows = experiments.eval_rows(data=held, tasks=experiments.VQA, limit=args.limit)
    import datasets

    def rows_in(path: Path) -> int:
        return sum(len(s) for s in datasets.load_from_disk(str(path)).values())

    what = (" + vqa_composite" if args.composite else "") + ("" if args.clip == "shapes-clip" else f" ({args.clip})")
    sizes = {"full": rows_in(full), **{f"cos ≥ {t:g}{what}": rows_in(p) for t, p in deduped.items()}}
    results: dict[str, dict[str, list[float]]] = {}
    for label, data in ((f"full ({sizes['full']} rows)", full),
                        *((f"semantic dedup cos ≥ {t:g}{what} ({sizes[f'cos ≥ {t:g}{what}']} rows)", p)
                          for t, p in deduped.items())):
        print(label)
        results.update(experiments.learns(common=[f"model.path={base}", f"data.path={data}",
                                                  f"output.dir={work / 'lora'}"],
                                          seeds=args.seeds, rows=rows, steps=args.steps, echo=print, label=label))
    record = {"clip": args.clip, "composite": args.composite, "thresholds": args.threshold, "steps": args.steps, "seeds": args.seeds, "limit": args.limit,
              "rows": sizes, "results": results, "minutes": (time.time() - started) / 60}
    path = work / f"train-{args.steps}{tag}.json"
    if path.is_file():  # more seeds of the same runs: add them (a seed already there is replaced)
        old = json.loads(path.read_text(encoding="utf-8"))
        same = {k: old[k] for k in ("thresholds", "limit", "rows")} == {k: record[k] for k in ("thresholds", "limit", "rows")}
        if same:
            keep = [i for i, seed in enumerate(old["seeds"]) if seed not in args.seeds]
            for label, columns in results.items():
                for column, values in columns.items():
                    columns[column] = [old["results"][label][column][i] for i in keep] + values
            record["seeds"] = [old["seeds"][i] for i in keep] + args.seeds
            record["minutes"] += old["minutes"]
    path.write_text(json.dumps(record, indent=1), encoding="utf-8")
    print(json.dumps(record, indent=1))
    stored = json.loads((work / "dedup.json").read_text(encoding="utf-8"))
    dedup.write_section(path=dedup.HERE / "RESULTS.md", text=dedup.section(
        results=stored, command="python benchmarks/efficacy/dedup.py", minutes=stored.get("minutes", 0.0),
        train=dedup.train_records(work)))


if __name__ == "__main__":
    main()
