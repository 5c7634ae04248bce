"""QLoRA (4-bit NF4 base) vs LoRA (bf16 base) on a ~1B-parameter random LLaVA: peak memory and tokens/s.

    bash benchmarks/gpu_check.sh                             # on a GPU machine (< 5 minutes)
    python benchmarks/gpu_check.py --device cpu --tiny       # dry run of the same code paths on CPU

The model (`vlm_fixtures.build_llava`, Llama 2048 x 20 layers ≈ 1.0B parameters) is saved once in
bf16 and loaded twice through `from_pretrained`, as a user's checkpoint would be: plain bf16, and 4-bit
NF4 with double quantisation and bf16 compute (`BitsAndBytesConfig`; vision tower, projector and LM
head kept unquantised). Both get LoRA r=16 on every linear layer of the LLM and train `--steps`
AdamW steps on the same batches (ChatCollator, fixed-length answers); the first `--warmup` steps are
not timed. Peak memory is `torch.cuda.max_memory_allocated` from before the load (weights included).
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

SIZES = {"1b": {"hidden": 2048, "layers": 20, "intermediate": 5632, "heads": 16},
         "tiny": {"hidden": 128, "layers": 2, "intermediate": 256, "heads": 4}}


def _load(folder: Path, *, mode: str, device: str) -> Any:
    """The saved model as bf16, or as 4-bit NF4 (bitsandbytes) prepared for k-bit training."""
    import torch
    from transformers import AutoModelForImageTextToText, BitsAndBytesConfig

    if mode == "lora-bf16":
        return AutoModelForImageTextToText.from_pretrained(str(folder), dtype=torch.bfloat16).to(device)
    from peft import prepare_model_for_kbit_training

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16,
                               llm_int8_skip_modules=["lm_head", "multi_modal_projector", "vision_tower"])
    model = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=torch.bfloat16, quantization_config=quant,
                                                        device_map={"": device})
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def _measure(folder: Path, *, mode: str, device: str, batches: list[dict[str, Any]], steps: int, warmup: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model

    from vlmtrain.model import lora_target_regex

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    base = _load(folder, mode=mode, device=device)
    torch.manual_seed(0)
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                                            target_modules=lora_target_regex(model=base, targets="all-linear")))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    model.train()
    tokens, losses, start = 0, [], 0.0
    for step in range(warmup + steps):
        if step == warmup:
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
        batch = {k: v.to(device) for k, v in batches[step % len(batches)].items()}
        batch["pixel_values"] = batch["pixel_values"].to(torch.bfloat16)
        with torch.autocast(device_type="cuda" if cuda else "cpu", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if step >= warmup:
            tokens += int(batch["attention_mask"].sum())
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    del model, base, optimizer
    gc.collect()
    return {"mode": mode, "peak_gib": peak, "tokens_s": tokens / seconds, "first_loss": losses[0],
            "last_loss": losses[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run")
    parser.add_argument("--tiny", action="store_true", help="a ~1M-parameter model (CPU dry run)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--answer-words", type=int, default=120)
    args = parser.parse_args()

    import torch
    import vlm_fixtures

    from vlmtrain.collate import ChatCollator

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu --tiny for a dry run")
    model, processor = vlm_fixtures.build_llava(seed=0, **SIZES["tiny" if args.tiny else "1b"])
    params = vlm_fixtures.parameters(model)
    rows = vlm_fixtures.rows(n=args.batch * 4, max_answer_words=args.answer_words, seed=0)
    for row in rows:  # fixed-length answers: every step costs the same
        row["messages"][1]["content"][0]["text"] = " ".join(vlm_fixtures.WORDS * 8)[: args.answer_words * 6]
    collator = ChatCollator(processor=processor, max_length=2048)
    batches = [collator(rows[i : i + args.batch]) for i in range(0, len(rows), args.batch)]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        model.to(torch.bfloat16).save_pretrained(tmp)
        processor.save_pretrained(tmp)
        del model
        for mode in ("lora-bf16", "qlora-4bit"):
            try:
                results.append(_measure(Path(tmp), mode=mode, device=args.device, batches=batches,
                                        steps=args.steps, warmup=args.warmup))
            except Exception as err:  # a CPU dry run may lack a 4-bit kernel; say so in the table
                results.append({"mode": mode, "error": f"{type(err).__name__}: {err}"[:200]})
    tokens = int(batches[0]["attention_mask"].sum())
    print(f"model: {params / 1e9:.3f}B parameters, device {args.device}, batch {args.batch} x {tokens // args.batch} "
          f"tokens, {args.steps} timed steps")
    print(f"{'mode':<12} {'peak GiB':>9} {'tokens/s':>10} {'first loss':>11} {'last loss':>10}")
    for r in results:
        if "error" in r:
            print(f"{r['mode']:<12} failed: {r['error']}")
        else:
            print(f"{r['mode']:<12} {r['peak_gib']:>9.2f} {r['tokens_s']:>10.1f} {r['first_loss']:>11.4f} "
                  f"{r['last_loss']:>10.4f}")
    ok = [r for r in results if "error" not in r]
    if len(ok) == 2 and args.device.startswith("cuda"):
        print(f"memory qlora/lora: {ok[1]['peak_gib'] / ok[0]['peak_gib']:.2f}  "
              f"speed qlora/lora: {ok[1]['tokens_s'] / ok[0]['tokens_s']:.2f}")


if __name__ == "__main__":
    main()
