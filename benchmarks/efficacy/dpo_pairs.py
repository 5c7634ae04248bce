"""Preference accuracy of trained runs on a preference split, per kind of pair, side by side.

    python benchmarks/efficacy/dpo_pairs.py --pairs out/shapes-preference:validation runs/shapes-dpo/stages/02-sft runs/shapes-dpo

For each run (loaded as `vlmtrain predict` loads it: base + earlier stages + its adapter), the share of
pairs whose chosen answer has the higher summed log-prob than the rejected one (the SFT collator's
answer mask, vlmtrain/training/dpo.py), overall and per `meta.preference` task/kind, so "before" (the SFT stage)
and "after" (DPO) read in one table. CPU is fine for the tiny models.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def likelier_share(*, run_dir: Path, pairs: object, batch_size: int) -> dict[str, float]:
    import torch

    from vlmtrain.data.collate import ChatCollator
    from vlmtrain.data.dataset import row_batches
    from vlmtrain.evaluation.predict import load_run
    from vlmtrain.models.families import family_of
    from vlmtrain.training.dpo import PairCollator, pair_logps, split_pair

    model, processor = load_run(run_dir=run_dir, device="cpu")
    family = family_of(model.config.model_type)
    collator = PairCollator(chat=ChatCollator(processor=processor, max_length=4096, family=family))
    hits: dict[str, list[float]] = defaultdict(list)
    with torch.no_grad():
        for rows in row_batches(pairs, batch_size=batch_size):
            chosen, rejected = split_pair(pair_logps(model=model, batch=collator(rows), reference=False)[0])
            for row, win in zip(rows, (chosen > rejected).tolist(), strict=True):
                how = json.loads(row["meta"]).get("preference") or {}
                for key in ("overall", f"{how.get('task')}/{how.get('kind')}"):
                    hits[key].append(float(win))
    return {k: sum(v) / len(v) for k, v in sorted(hits.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", required=True, help="OUT:SPLIT of a vlmdata preference dataset")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    from vlmtrain.data.dataset import open_split

    path, _, split = args.pairs.partition(":")
    pairs = open_split(path=Path(path), split=split or "validation")
    table = {str(run): likelier_share(run_dir=run, pairs=pairs, batch_size=args.batch_size) for run in args.runs}
    keys = sorted({k for scores in table.values() for k in scores})
    print("| pairs | " + " | ".join(table) + " |")
    print("|---|" + "---|" * len(table))
    for key in keys:
        print(f"| {key} | " + " | ".join(f"{scores.get(key, float('nan')):.3f}" for scores in table.values()) + " |")


if __name__ == "__main__":
    main()
