"""QLoRA (4-bit NF4 base) vs LoRA (bf16 base) on a ~1B-parameter random LLaVA: memory and tokens/s.

    bash benchmarks/gpu_check.sh                             # on a GPU machine (< 5 minutes)
    python benchmarks/gpu_check.py --device cpu --tiny       # dry run of the same code paths on CPU

The model (`vlm_fixtures.build_llava`, Llama 2048 x 20 layers ≈ 1.0B parameters) is saved once in
bf16 and loaded three times through `from_pretrained`, as a user's checkpoint would be: plain bf16
(`lora-bf16`), and twice as 4-bit NF4 with double quantisation and bf16 compute, loaded by vlmtrain's
own `bnb_config` and skip list (vision tower, projector, LM head and narrow layers unquantised): as
vlmtrain does by default (`qlora-4bit`: the frozen unquantised weights stay bf16) and with
`quant.upcast: true` (`qlora-4bit-upcast`: every unquantised weight cast to fp32, which is what peft's
`prepare_model_for_kbit_training` does). Each gets LoRA r=16 on every linear layer of the LLM and trains `--steps` AdamW
steps on the same batches (ChatCollator, fixed-length answers); the first `--warmup` steps are not
timed. "weights" is `torch.cuda.memory_allocated` after the load, the adapters and the optimiser are
built (no activations yet); "peak" is `torch.cuda.max_memory_allocated` over the whole run; both net of
"before", what was still allocated when the mode started (an earlier mode's leftovers).
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

MODES = ("lora-bf16", "qlora-4bit", "qlora-4bit-upcast")
SIZES = {"1b": {"hidden": 2048, "layers": 20, "intermediate": 5632, "heads": 16},
         "tiny": {"hidden": 128, "layers": 2, "intermediate": 256, "heads": 4}}


def _load(folder: Path, *, mode: str, device: str) -> Any:
    """The saved model as bf16, or as 4-bit NF4 the way `vlmtrain` loads it (its skip list and bnb config)."""
    import torch
    from transformers import AutoModelForImageTextToText

    from vlmtrain.config.tuning import QuantSection
    from vlmtrain.models.families import family_of
    from vlmtrain.models.quant import bnb_config, skip_modules, upcast_floats

    if mode == "lora-bf16":
        return AutoModelForImageTextToText.from_pretrained(str(folder), dtype=torch.bfloat16).to(device)
    quant = QuantSection(bits=4, quant_type="nf4", double_quant=True, compute_dtype="bfloat16",
                         upcast=mode == "qlora-4bit-upcast")
    skip = skip_modules(model_path=str(folder), family=family_of("llava"), trust_remote_code=False)
    model = AutoModelForImageTextToText.from_pretrained(str(folder), dtype=torch.bfloat16, device_map={"": device},
                                                        quantization_config=bnb_config(quant=quant, skip=skip))
    model.requires_grad_(False)
    if quant.upcast:  # what peft's prepare_model_for_kbit_training does: every unquantised weight to fp32
        upcast_floats(model=model, only_trainable=False)
    return model


def _measure(folder: Path, *, mode: str, device: str, batches: list[dict[str, Any]], steps: int, warmup: int) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from vlm_fixtures import lora_target_regex

    cuda = device.startswith("cuda")
    before = 0.0
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() / 2**30  # anything an earlier mode left behind
    base = _load(folder, mode=mode, device=device)
    torch.manual_seed(0)
    model = get_peft_model(base, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
                                            target_modules=lora_target_regex(model=base, targets="all-linear")))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    weights = torch.cuda.memory_allocated() / 2**30 - before if cuda else float("nan")  # no activations yet
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
    peak = torch.cuda.max_memory_allocated() / 2**30 - before if cuda else float("nan")
    del model, base, optimizer
    gc.collect()
    return {"mode": mode, "before_gib": before, "weights_gib": weights, "peak_gib": peak,
            "tokens_s": tokens / seconds, "first_loss": losses[0],
            "last_loss": losses[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a dry run")
    parser.add_argument("--tiny", action="store_true", help="a ~1M-parameter model (CPU dry run)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--answer-words", type=int, default=120)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated, in the order to run; the first "
                        "is the baseline of the ratios")
    args = parser.parse_args()

    import torch
    import vlm_fixtures

    from vlmtrain.data.collate import ChatCollator

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
        for mode in args.modes.split(","):
            try:
                results.append(_measure(Path(tmp), mode=mode, device=args.device, batches=batches,
                                        steps=args.steps, warmup=args.warmup))
            except Exception as err:  # a CPU dry run may lack a 4-bit kernel; say so in the table
                results.append({"mode": mode, "error": f"{type(err).__name__}: {err}"[:200]})
    tokens = int(batches[0]["attention_mask"].sum())
    print(f"model: {params / 1e9:.3f}B parameters, device {args.device}, batch {args.batch} x {tokens // args.batch} "
          f"tokens, {args.steps} timed steps")
    print(f"{'mode':<17} {'before GiB':>10} {'weights GiB':>11} {'peak GiB':>9} {'tokens/s':>10} {'first loss':>11} "
          f"{'last loss':>10}")
    for r in results:
        if "error" in r:
            print(f"{r['mode']:<17} failed: {r['error']}")
        else:
            print(f"{r['mode']:<17} {r['before_gib']:>10.2f} {r['weights_gib']:>11.2f} {r['peak_gib']:>9.2f} "
                  f"{r['tokens_s']:>10.1f} "
                  f"{r['first_loss']:>11.4f} {r['last_loss']:>10.4f}")
    base = results[0]
    if "error" not in base and args.device.startswith("cuda"):
        for r in results[1:]:
            if "error" not in r:
                print(f"{r['mode']} / {base['mode']}: weights {r['weights_gib'] / base['weights_gib']:.2f}  "
                      f"peak memory {r['peak_gib'] / base['peak_gib']:.2f}  speed {r['tokens_s'] / base['tokens_s']:.2f}")


if __name__ == "__main__":
    main()
