"""Training throughput with packing (`train.packing`) on CPU, against the two batchings people use, in one run:
`transformers.Trainer` with random padded batches, and vlmtrain's length-grouped batches.

    python benchmarks/bench_packing.py            # ~50M-parameter random LLaVA, 96 rows, batch 8
    python benchmarks/bench_packing.py --quick    # ~5M parameters, 48 rows (a few minutes)

Same model (random LLaVA from `vlm_fixtures`, LoRA r 8 on every linear layer of the LLM), same rows
(one 32 px image, answers log-uniform from 1 to `--max-words` words), same seed, same collator and
answer mask, 1 epoch, each variant in its own spawned process. The padded runs take `--batch` rows a
step; the packed run takes one pack a step, whose capacity is chosen so that the number of packs (steps)
equals the number of padded batches: every variant makes the same number of optimizer steps over the
same rows, so their mean training losses are comparable. tokens/s counts real (non-padding) tokens: the
same total for every variant, so ratios are time ratios. On a shared machine use `--threads 1` (threads
fighting over busy cores distort everything) and `--repeats 2` (alternating order, fastest round kept).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

NAMES = {"padded": "transformers.Trainer, random padded", "grouped": "vlmtrain, length-grouped",
         "packed": "vlmtrain, packed (train.packing)"}


class _SlotCounter:
    """The variant's collator, counting the token slots (real + padding) it hands the model."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.slots = inner, 0

    def __call__(self, features: Any) -> Any:
        batch = self.inner(features)
        self.slots += int(batch["input_ids"].numel())
        return batch


def _train(variant: str, size: dict[str, int], n: int, max_words: int, batch: int, threads: int, out: Any) -> None:
    """One run in a fresh process; puts (real tokens, seconds, mean loss, peak RSS MiB, params, steps, note, slots)."""
    import torch
    import vlm_fixtures

    from vlmtrain.data.packing import PackedCollator, PackedDataset, pack_rows, packing_report

    torch.set_num_threads(threads)
    model, processor, params, data, collator, lengths = vlm_fixtures.lora_setup(size=size, n=n,
                                                                                max_answer_words=max_words)
    steps = math.ceil(n / batch)
    note = ""
    train_data, data_collator, per_step = data, collator, batch
    if variant == "packed":
        capacity = max(max(lengths), math.ceil(sum(lengths) / steps))
        while True:  # the smallest capacity whose packs are no more than the padded runs' steps
            packs = pack_rows(lengths=lengths, capacity=capacity, seed=0)
            if len(packs) <= steps:
                break
            capacity += 8
        report = packing_report(lengths=lengths, tasks=["detail"] * n, packs=packs, capacity=capacity,
                                batch_size=batch, seed=0)
        note = f"{len(packs)} packs of <= {capacity} tokens, efficiency {report.efficiency:.1%}"
        train_data, data_collator, per_step = PackedDataset(rows=data, packs=packs), PackedCollator(inner=collator), 1
        from vlmtrain.models.packed_attention import use_packed_attention

        use_packed_attention(model)  # what `vlmtrain run` does with train.packing on SDPA
    data_collator = _SlotCounter(data_collator)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = vlm_fixtures.bench_trainer(grouped=variant == "grouped", model=model, processor=processor,
                                             data=train_data, collator=data_collator, lengths=lengths, batch=per_step,
                                             output_dir=tmp)
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
        done = result.global_step
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.put((sum(lengths), seconds, float(result.training_loss), rss, params, done, note, data_collator.slots))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="~5M parameters, 48 rows")
    parser.add_argument("--rows", type=int, default=None)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--max-words", type=int, default=160)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--repeats", type=int, default=1,
                        help="rounds in alternating order (ABC, CBA, ...); each variant keeps its fastest round, "
                             "so a load change on a shared machine does not favour whichever ran last")
    args = parser.parse_args()
    import vlm_fixtures  # beside this file (sys.path above); numpy and the row contract only

    size = vlm_fixtures.SIZES["quick" if args.quick else "full"]
    n = args.rows or (48 if args.quick else 96)
    ctx = mp.get_context("spawn")
    results: dict[str, Any] = {}
    order = ["packed", "grouped", "padded"]  # ours first: any cold-start cost counts against us
    for round_ in range(args.repeats):
        for variant in order if round_ % 2 == 0 else order[::-1]:
            queue = ctx.Queue()
            proc = ctx.Process(target=_train, args=(variant, size, n, args.max_words, args.batch, args.threads, queue))
            proc.start()
            result = queue.get()
            proc.join()
            if variant not in results or result[1] < results[variant][1]:
                results[variant] = result
    tokens, _, _, _, params, _, note, _ = results["packed"]
    print(f"model: {params / 1e6:.1f}M parameters, {n} rows, {tokens} real tokens, batch {args.batch}, "
          f"{args.threads} threads, best of {args.repeats} round(s); packed: {note}")
    print(f"{'run':<38} {'steps':>5} {'seconds':>8} {'tokens/s':>9} {'mean loss':>10} {'peak RSS MiB':>13} "
          f"{'slots':>7}")
    for variant in ("padded", "grouped", "packed"):
        tok, sec, loss, rss, _, steps, _, slots = results[variant]
        print(f"{NAMES[variant]:<38} {steps:>5} {sec:>8.1f} {tok / sec:>9.1f} {loss:>10.4f} {rss:>13.0f} {slots:>7}")
    packed, grouped, padded = (results[v] for v in ("packed", "grouped", "padded"))
    # what removing padding alone can give (token slots the model computes, real + padding): the rest of a
    # ratio is cheaper attention (per row instead of over padded rows)
    print(f"padding bound: {padded[7] / packed[7]:.2f}x vs padded, {grouped[7] / packed[7]:.2f}x vs length-grouped")
    loss_diff = abs(packed[2] - padded[2]) / padded[2] * 100
    print(f"packing: {padded[1] / packed[1]:.2f}x vs padded, {grouped[1] / packed[1]:.2f}x vs length-grouped, "
          f"loss diff {loss_diff:.1f}%")


if __name__ == "__main__":
    main()
