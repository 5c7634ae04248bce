"""Training throughput on CPU: our trainer with length-grouped batches vs `transformers.Trainer` with
random batches, same model, same rows, same collator, measured in the same run.

    python benchmarks/bench_train.py            # ~50M-parameter random LLaVA, 96 rows, batch 8
    python benchmarks/bench_train.py --quick    # ~5M parameters, 48 rows (a minute)

Rows: one 32px image + a question; answers log-uniform from 1 to `--max-words` words, so random
batches are mostly padding. Both runs: LoRA (r 8, all linear layers of the LLM), 1 epoch, the same
seed, `vlmtrain.data.collate.ChatCollator` (it pads to the longest row of each batch — a plain padding
collator plus our answer mask, so both runs optimise the same loss). The baseline is the stock
`transformers.Trainer` (random order); ours is `vlmtrain.training.trainer.VlmTrainer` with
`LengthGroupedSampler`. Each run is its own spawned process, so peak RSS is per run.
tokens/s counts real (non-padding) tokens: the same total for both, so the ratio is a time ratio.
Both see every row once per epoch; the mean training losses are printed side by side.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))



def _train(variant: str, size: dict[str, int], n: int, max_words: int, batch: int, threads: int, out: Any) -> None:
    """One run in a fresh process; puts (tokens, seconds, mean loss, peak RSS MiB, params) on `out`."""
    import torch
    import vlm_fixtures


    torch.set_num_threads(threads)
    model, processor, params, data, collator, lengths = vlm_fixtures.lora_setup(size=size, n=n,
                                                                                max_answer_words=max_words)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = vlm_fixtures.bench_trainer(grouped=variant == "ours", model=model, processor=processor,
                                             data=data, collator=collator, lengths=lengths, batch=batch,
                                             output_dir=tmp)
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put((sum(lengths), seconds, float(result.training_loss), rss, params))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~5M parameters, 48 rows")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-words", type=int, default=160)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    args = parser.parse_args()
    import vlm_fixtures  # beside this file (sys.path above); numpy and the row contract only

    size = vlm_fixtures.SIZES["quick" if args.quick else "full"]
    n = args.rows or (48 if args.quick else 96)
    ctx = mp.get_context("spawn")
    results = {}
    for variant in ("ours", "transformers"):  # ours first: any cold-start cost counts against us
        queue = ctx.Queue()
        proc = ctx.Process(target=_train, args=(variant, size, n, args.max_words, args.batch, args.threads, queue))
        proc.start()
        results[variant] = queue.get()
        proc.join()
    tokens, _, _, _, params = results["ours"]
    print(f"model: {params / 1e6:.1f}M parameters, {n} rows, {tokens} real tokens, batch {args.batch}, "
          f"{args.threads} threads")
    print(f"{'run':<40} {'seconds':>8} {'tokens/s':>9} {'mean loss':>10} {'peak RSS MiB':>13}")
    names = {"transformers": "transformers.Trainer, random batches", "ours": "vlmtrain VlmTrainer, length-grouped"}
    for variant, (tok, sec, loss, rss, _) in sorted(results.items(), reverse=True):
        print(f"{names[variant]:<40} {sec:>8.1f} {tok / sec:>9.1f} {loss:>10.4f} {rss:>13.0f}")
    ratio = results["transformers"][1] / results["ours"][1]
    print(f"speed-up (tokens/s ours / transformers): {ratio:.2f}x")


if __name__ == "__main__":
    main()
