"""Packed vs padded training steps on a GPU: a random-weight Qwen2.5-VL with a ~3B language model, bf16 LoRA.

    bash benchmarks/gpu_packing.sh                          # on a GPU machine (a few minutes)
    python benchmarks/gpu_packing.py --device cpu --tiny    # dry run of the same code paths on CPU

The model is `vlmtrain.models.tiny.registry`'s Qwen2.5-VL (its real processor, chat template and 3-D mRoPE) with the
language model scaled to Qwen2.5-VL-3B's shape (hidden 2048, 36 layers, 16 heads, 2 KV heads,
intermediate 11008); `--layers` shortens it to fit the time. Rows: one image and answers log-uniform
from 1 to `--max-words` words. Both modes train the same rows with LoRA r=16 on every linear layer of the
LLM, AdamW, bf16 weights: `padded` in random batches of `--batch` rows (right-padded, 2-D attention
mask), `packed` in packs of the same rows (`vlmtrain.data.packing`: position ids restart per row, per-row
mRoPE, no attention across rows) whose number equals the number of padded batches. The attention is
flash-attention 2 (varlen from the position ids) when `flash_attn` imports, else SDPA. The first
`--warmup` steps are not timed. tokens/s counts real tokens; peak is `torch.cuda.max_memory_allocated`.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

SIZES = {"3b": {"hidden_size": 2048, "num_hidden_layers": 36, "num_attention_heads": 16, "num_key_value_heads": 2,
                "intermediate_size": 11008, "head_dim": 128},
         "tiny": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
                  "intermediate_size": 128, "head_dim": 16}}


def _model(*, size: dict[str, int], layers: int | None, attention: str, device: str) -> tuple[Any, Any]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2_5_VLForConditionalGeneration
    from vlm_fixtures import lora_target_regex

    from vlmtrain.data.packing import attach_packed_mrope
    from vlmtrain.models.tiny.registry import FAMILIES

    small, processor = FAMILIES["qwen2_5_vl"].build(seed=0)
    config = small.config
    text = config.text_config
    for key, value in size.items():
        setattr(text, key, value)
    if layers:
        text.num_hidden_layers = layers
    half = text.head_dim // 2  # mRoPE sections must sum to head_dim / 2
    text.rope_parameters["mrope_section"] = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    text.max_position_embeddings = 8192
    config._attn_implementation = attention
    torch.manual_seed(0)
    model = Qwen2_5_VLForConditionalGeneration(config).to(device=device, dtype=torch.bfloat16)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                                             target_modules=lora_target_regex(model=model, targets="all-linear")))
    attach_packed_mrope(model)
    return model, processor


def _to(batch: dict[str, Any], device: str) -> dict[str, Any]:
    return {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}


def main() -> None:
    import torch
    import vlm_fixtures

    from vlmtrain.data.collate import ChatCollator
    from vlmtrain.data.diagnostics import diagnose
    from vlmtrain.data.packing import PackedCollator, pack_rows
    from vlmtrain.models.families import family_of

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--layers", type=int, default=None)
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--max-words", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    try:
        import flash_attn  # noqa: F401

        attention = "flash_attention_2" if args.device == "cuda" else "sdpa"
    except ImportError:
        attention = "sdpa"
    size = SIZES["tiny" if args.tiny else "3b"]
    model, processor = _model(size=size, layers=args.layers, attention=attention, device=args.device)
    params = sum(p.numel() for p in model.parameters())
    data = vlm_fixtures.dataset(n=args.rows, max_answer_words=args.max_words, seed=0)
    rows = [data[i] for i in range(len(data))]
    inner = ChatCollator(processor=processor, max_length=8192, family=family_of("qwen2_5_vl"))
    lengths = diagnose(dataset=data, collator=inner).lengths
    steps = math.ceil(len(rows) / args.batch)
    capacity = max(max(lengths), math.ceil(sum(lengths) / steps))
    while len(packs := pack_rows(lengths=lengths, capacity=capacity, seed=0)) > steps:
        capacity += 16
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0)).tolist()
    padded = [inner([rows[i] for i in order[s:s + args.batch]]) for s in range(0, len(rows), args.batch)]
    packer = PackedCollator(inner=inner)
    packed = [packer([[rows[i] for i in p]]) for p in packs]
    print(f"model: {params / 1e9:.2f}B parameters, attention {attention}, {len(rows)} rows, {sum(lengths)} real "
          f"tokens, {steps} steps; padded batch {args.batch}, packs of <= {capacity} tokens")
    results = {}
    for mode, batches in (("padded", padded), ("packed", packed)):
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
        if args.device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        timed, tokens, losses = 0.0, 0, []
        for step, batch in enumerate(batches):
            batch = _to(batch, args.device)
            start = time.perf_counter()
            loss = model(**batch).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if args.device == "cuda":
                torch.cuda.synchronize()
            if step >= args.warmup:
                timed += time.perf_counter() - start
                tokens += int(batch["attention_mask"].sum()) if mode == "padded" else batch["input_ids"].numel()
            losses.append(float(loss.detach()))
        peak = torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else float("nan")
        results[mode] = (tokens / max(timed, 1e-9), peak, sum(losses) / len(losses))
        del optimizer
    print(f"{'mode':<8} {'tokens/s':>10} {'peak GiB':>9} {'mean loss':>10}")
    for mode, (rate, peak, loss) in results.items():
        print(f"{mode:<8} {rate:>10.1f} {peak:>9.2f} {loss:>10.4f}")
    print(f"packing: {results['packed'][0] / results['padded'][0]:.2f}x tokens/s vs padded, peak memory "
          f"{results['packed'][1] / results['padded'][1]:.2f}x")


if __name__ == "__main__":
    main()
