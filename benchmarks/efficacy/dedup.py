"""Dedup efficacy in the shapes world: does semantic dedup remove planted near-duplicates at a precision
perceptual hashing cannot match?

    python benchmarks/efficacy/dedup.py            # -> dedup_pr.png and the dedup section of RESULTS.md
    python benchmarks/efficacy/dedup.py --quick    # fewer rows and steps, into runs/efficacy-dedup-quick/

The world is recipes/shapes-neardup.yaml: the five VQA tasks, 20 % of each task's rows re-drawing an
earlier row's scene with jitter (ground truth in meta.near_duplicate_of; see vlmdata/sources/shapes.py).
Each method and threshold is a real `vlmdata build` of that recipe with `--set dedup.images=...` (and
`embed=...` for semantic, through the embed stage and its cache); its `duplicate_*` rejects are scored:

- a removal is right when the removed row and the row it duplicates (`duplicate_of`) are one scene:
  planted re-drawings of one original, or byte-identical images;
- precision = right removals / removals; recall = right removals / (rows − scenes), the most a perfect
  dedup could remove.

The embedding model is the tiny CLIP of shapes_clip.py, trained on scenes of another seed.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from setup import RECIPES, ROOT  # noqa: E402
from shapes_clip import write_shapes_clip  # noqa: E402

HERE = Path(__file__).resolve().parent
SIZES = {"full": {"rows_per_task": 600, "clip_steps": 500, "long_clip_steps": 1000},
         "quick": {"rows_per_task": 120, "clip_steps": 60, "long_clip_steps": 120}}
COSINES = (0.85, 0.90, 0.95, 0.97, 0.98, 0.99, 0.995, 0.998)
DISTANCES = (0, 2, 4, 6, 8, 10)
MARK = ("<!-- dedup efficacy: written by benchmarks/efficacy/dedup.py -->",
        "<!-- /dedup efficacy -->")


TOLERANCE = 3  # px: a planted re-drawing moves a box edge by at most shift (2) + side (1)


def _signature(context: dict[str, Any]) -> tuple:
    """What two scenes must share to be one scene: background (nearest palette colour) and the shapes'
    kinds, colour names and size classes, in a fixed order."""
    from vlmdata.sources.shapes import BACKGROUNDS

    bg = min(BACKGROUNDS, key=lambda b: sum((x - y) ** 2 for x, y in zip(b, context["background"], strict=True)))
    return bg, tuple(sorted((s["kind"], s["color"], s["size"]) for s in context["scene"]))


def _boxes(context: dict[str, Any]) -> list[list[int]]:
    return [s["box"] for s in sorted(context["scene"], key=lambda s: (s["kind"], s["color"], s["size"], s["box"]))]


def truth(*, rows_per_task: int) -> tuple[dict[str, str], int, dict[str, int]]:
    """({locator: scene key}, number of scenes, counts): two rows are one scene when a planted re-drawing
    names the other (meta.near_duplicate_of), or when the world drew the same scene twice by chance: same
    background, kinds, colours and size classes, every box edge within TOLERANCE px (at 32 px such chance
    pairs are common, and they are near-duplicates as much as the planted ones), or identical bytes."""
    from vlmdata.recipe import load_recipe
    from vlmdata.sources.shapes import read_shapes

    spec = load_recipe(RECIPES / "shapes-neardup.yaml", overrides=[f"sources.0.count={rows_per_task}"]).recipe.sources[0]
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    def join(a: str, b: str) -> bool:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
        return ra != rb

    by_bytes: dict[str, str] = {}
    blocks: dict[tuple, list[tuple[str, list[list[int]]]]] = {}
    locators = []
    planted = chance = 0
    planted_rows: set[str] = set()
    for r in read_shapes(spec):
        loc = r.locator
        locators.append(loc)
        parent.setdefault(loc, loc)
        if "near_duplicate_of" in r.context:
            planted += join(loc, r.context["near_duplicate_of"])
            planted_rows.add(loc)
        sha = hashlib.sha256(r.images[0].data).hexdigest()
        if sha in by_bytes:
            join(loc, by_bytes[sha])
        by_bytes.setdefault(sha, loc)
        blocks.setdefault(_signature(r.context), []).append((loc, _boxes(r.context)))
    for members in blocks.values():
        for i, (a, boxes_a) in enumerate(members):
            for b, boxes_b in members[:i]:
                if all(abs(x - y) <= TOLERANCE for ba, bb in zip(boxes_a, boxes_b, strict=True)
                       for x, y in zip(ba, bb, strict=True)):
                    chance += join(a, b)
    keys = {loc: find(loc) for loc in locators}
    scenes = len(set(keys.values()))
    return keys, scenes, {"rows": len(keys), "scenes": scenes, "planted": planted, "by_chance": chance,
                          "planted_rows": sorted(planted_rows)}


def score(*, out: Path, keys: dict[str, str], scenes: int, planted: set[str]) -> dict[str, Any]:
    """Precision and recall of one build's duplicate rejects against the scene keys, two ways:
    - by pair: a removal is right when the kept row it names (`duplicate_of`) is the same scene;
    - by scene: a removal is harmless when its scene still has a row in the dataset (SemDeDup's groups
      are connected components, so a removed row may name a kept row of another scene along a chain
      while its own scene survives elsewhere; and `scenes_lost` counts the scenes with no row left).
    `recall_planted`: the share of the planted re-drawings removed as a duplicate of their own scene."""
    import datasets

    built = datasets.load_from_disk(str(out))
    locator_of = {row_id: json.loads(meta)["locator"] if isinstance(meta, str) else meta["locator"]
                  for split in built.values() for row_id, meta in zip(split["id"], split["meta"], strict=True)}
    removed = right = right_planted = harmless = 0
    surviving = {keys[loc] for loc in locator_of.values()}
    for line in (out / "rejects.jsonl").read_text(encoding="utf-8").splitlines():
        rej = json.loads(line)
        if not rej["reason"].startswith("duplicate_"):
            continue
        removed += 1
        harmless += keys[rej["locator"]] in surviving
        ok = keys[rej["locator"]] == keys[locator_of[rej["duplicate_of"]]]
        right += ok
        right_planted += ok and rej["locator"] in planted
    possible = len(keys) - scenes
    return {"removed": removed, "right": right, "kept": len(locator_of),
            "precision": right / removed if removed else 1.0, "recall": right / possible if possible else 1.0,
            "recall_planted": right_planted / len(planted) if planted else 1.0,
            "precision_scene": harmless / removed if removed else 1.0,
            "recall_scene": harmless / possible if possible else 1.0, "scenes_lost": scenes - len(surviving)}


def build_once(*, out: Path, rows_per_task: int, overrides: list[str]) -> float:
    from vlmdata.build import build
    from vlmdata.recipe import load_recipe

    if out.exists():
        shutil.rmtree(out)
    loaded = load_recipe(RECIPES / "shapes-neardup.yaml", overrides=[f"sources.0.count={rows_per_task}", *overrides])
    started = time.time()
    build(loaded, out=out, progress=False)
    return time.time() - started


def sweep(*, work: Path, size: dict[str, int], echo: Any = print) -> dict[str, Any]:
    keys, scenes, counts = truth(rows_per_task=size["rows_per_task"])
    echo(f"{len(keys)} rows, {scenes} scenes: {len(keys) - scenes} removable; {len(counts['planted_rows'])} planted rows, "
         f"{counts['by_chance']} chance joins")
    models = {"semantic (shapes CLIP, views + captions, 500 steps)": write_shapes_clip(
                  out=work / "shapes-clip", steps=size["clip_steps"], views=True, echo=echo),
              "semantic (shapes CLIP, views + captions, 1000 steps)": write_shapes_clip(
                  out=work / "shapes-clip-long", steps=size["long_clip_steps"], views=True, echo=echo),
              "semantic (shapes CLIP, captions only, 500 steps)": write_shapes_clip(
                  out=work / "shapes-clip-captions", steps=size["clip_steps"], views=False, echo=echo)}
    results: dict[str, Any] = {**{k: v for k, v in counts.items() if k != "planted_rows"},
                               "planted_rows": len(counts["planted_rows"]), "methods": {}}
    runs: list[tuple[str, str, list[str]]] = [
        ("phash", f"d ≤ {d}", [f"dedup.images={{method: phash, max_distance: {d}}}"]) for d in DISTANCES]
    for label, model in models.items():
        runs += [(label, f"cos ≥ {c:g}", [f"embed={{model: {model}, batch_size: 256}}",
                                              f"dedup.images={{method: semantic, threshold: {c}}}"]) for c in COSINES]
    for method, at, overrides in runs:
        out = work / "builds" / "current"
        seconds = build_once(out=out, rows_per_task=size["rows_per_task"], overrides=overrides)
        s = score(out=out, keys=keys, scenes=scenes, planted=set(counts["planted_rows"]))
        s["seconds"] = round(seconds, 1)
        results["methods"].setdefault(method, {})[at] = s
        echo(f"  {method} {at}: removed {s['removed']}, precision {s['precision']:.3f}, recall {s['recall']:.3f}, "
             f"planted recall {s['recall_planted']:.3f}")
    return results


def figure(*, results: dict[str, Any], path: Path) -> None:
    """Precision against recall (all removable rows, left; the planted re-drawings only, right), one
    point per threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for ax, (pkey, rkey), what in ((axes[0], ("precision", "recall"), "by pair: the kept row named is the same scene"),
                                   (axes[1], ("precision_scene", "recall_scene"), "by scene: the scene still has a row")):
        ax.set_title(what, fontsize=9)
        for (method, points), style in zip(results["methods"].items(), ("o-", "s-", "D-", "^--"), strict=False):
            r = [p[rkey] for p in points.values()]
            p = [p[pkey] for p in points.values()]
            ax.plot(r, p, style, label=method)
            for at, x, y in zip(points, r, p, strict=True):
                ax.annotate(at.split()[-1], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xlabel("recall (right removals / removable rows)")
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("precision (right removals / removals)")
    axes[0].legend(loc="upper right", fontsize=8)
    fig.suptitle(f"Near-duplicates in the shapes world: {results['rows']} rows, {results['planted_rows']} planted "
                 f"re-drawings, {results['scenes']} scenes (labels: phash max distance, semantic cosine)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def train_records(work: Path) -> list[dict[str, Any]]:
    """dedup_train.py's results, one file per step budget (WORK/train-STEPS.json), fewest steps first."""
    found = [json.loads(p.read_text(encoding="utf-8")) for p in work.glob("train-*.json")]
    return sorted(found, key=lambda r: (r["steps"], r.get("composite", False), r.get("clip", "")))


def section(*, results: dict[str, Any], command: str, minutes: float, train: list[dict[str, Any]] = ()) -> str:
    lines = [MARK[0], "## Dedup efficacy: planted near-duplicates, semantic dedup vs phash", "",
             f"Generated by `{command}` in {minutes:.1f} min; protocol in dedup.py. {results['rows']} rows of "
             f"recipes/shapes-neardup.yaml: {results['planted_rows']} planted re-drawings; with the scenes the world "
             f"drew twice by chance ({results['by_chance']} joins) there are {results['scenes']} scenes, so "
             f"{results['rows'] - results['scenes']} rows are removable. Figure: dedup_pr.png.", "",
             "By pair: a removal is right when the kept row it names is the same scene. By scene: a removal is "
             "harmless when its scene still has a row in the dataset; scenes lost: scenes with no row left.", "",
             "| method | threshold | removed | precision (pair) | recall (pair) | planted recall | precision (scene) "
             "| recall (scene) | scenes lost |", "|---|---|---|---|---|---|---|---|---|"]
    for method, points in results["methods"].items():
        lines += [f"| {method} | {at} | {p['removed']} | {p['precision']:.3f} | {p['recall']:.3f} "
                  f"| {p['recall_planted']:.3f} | {p['precision_scene']:.3f} | {p['recall_scene']:.3f} "
                  f"| {p['scenes_lost']} |" for at, p in points.items()]
    for record in train:
        columns = list(next(iter(record["results"].values())))
        flag = (" --composite" if record.get("composite") else "") + (
            f" --clip {record['clip']}" if record.get("clip", "shapes-clip") != "shapes-clip" else "")
        lines += ["", f"### Accuracy after training on the deduplicated set, {record['steps']} LoRA steps{flag} "
                  f"(`python benchmarks/efficacy/dedup_train.py --steps {record['steps']} --seeds "
                  f"{' '.join(map(str, record['seeds']))}{flag}`, {record['minutes']:.1f} min)", "",
                  f"LoRA on the caption-pretrained base, {record['steps']} steps, seeds {record['seeds']}, on the full world and on its semantic dedups (cos ≥ {', '.join(f'{t:g}' for t in record['thresholds'])}); VQA accuracy on "
                  f"{record['limit']} held-out rows per task (the same world at seed 99, no planted copies).", "",
                  "| training set | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
        for label, values in record["results"].items():
            lines.append(f"| {label} | " + " | ".join(_mean_sd(values[c]) for c in columns) + " |")
    lines += ["", MARK[1]]
    return "\n".join(lines)


def _mean_sd(values: list[float]) -> str:
    import statistics

    return f"{values[0]:.3f}" if len(values) == 1 else f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def write_section(*, path: Path, text: str) -> None:
    """Put the dedup section into RESULTS.md, replacing an earlier one; run.py keeps it when it rewrites."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if MARK[0] in old and MARK[1] in old:
        head, rest = old.split(MARK[0], 1)
        old = head.rstrip("\n") + rest.split(MARK[1], 1)[1]
    path.write_text(old.rstrip("\n") + "\n\n" + text + "\n", encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rows and training steps (a smoke run)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default runs/efficacy-dedup[-quick])")
    parser.add_argument("--replot", action="store_true", help="redraw the figure and section from WORK/dedup.json")
    args = parser.parse_args()
    size = SIZES["quick" if args.quick else "full"]
    import torch

    torch.set_num_threads(1)  # the embed stage runs in this process; see shapes_clip.py on shared cores
    work = (args.out or ROOT / "runs" / ("efficacy-dedup-quick" if args.quick else "efficacy-dedup")).resolve()
    started = time.time()
    if args.replot:
        results = json.loads((work / "dedup.json").read_text(encoding="utf-8"))
    else:
        results = sweep(work=work, size=size)
        results["minutes"] = (time.time() - started) / 60
        (work / "dedup.json").write_text(json.dumps(results, indent=1), encoding="utf-8")
    target = work if args.quick else HERE
    figure(results=results, path=target / "dedup_pr.png")
    command = "python benchmarks/efficacy/dedup.py" + (" --quick" if args.quick else "")
    write_section(path=target / "RESULTS.md", text=section(
        results=results, command=command, minutes=results.get("minutes", 0.0), train=train_records(work)))
    print(f"wrote {target / 'dedup_pr.png'} and {target / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
