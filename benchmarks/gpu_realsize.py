"""Real-size VLMs on one GPU: QLoRA r=16 vs bf16 LoRA, 1024 tokens with one image, 10 timed steps.

Baseline: bf16 LoRA (r=16, every linear layer of the LLM) of the same model in the same run; the ratio
printed is QLoRA / LoRA for peak memory and tokens/s. Models are built with random weights from the
real configs in benchmarks/configs/ (each names the checkpoint it was copied from): the memory and
speed of a step do not depend on the weights' values, and nothing is downloaded.

Reported per model and method: weights (GiB allocated after build + adapter), activations (the step's
peak minus the memory before it), peak, tokens/s over the timed steps, and the last loss.

    python benchmarks/gpu_realsize.py                      # all four, on the GPU (results -> stdout)
    python benchmarks/gpu_realsize.py --only qwen2_5_vl-7b --steps 10
    python benchmarks/gpu_realsize.py --dry-run            # CPU: meta-device build + parameter counts only

The QLoRA path quantises in place (bitsandbytes NF4, double quant, bf16 compute) exactly the layers
`vlmtrain.models.quant.skip_modules` leaves to quantise: the LLM's linear layers, not the vision tower,
projector or LM head. Not needed by the tests; commit results to benchmarks/GPU_RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

CONFIGS = Path(__file__).parent / "configs"
TOKENS = 1024


def load_config(name: str) -> Any:
    from transformers import AutoConfig

    raw = json.loads((CONFIGS / f"{name}.json").read_text(encoding="utf-8"))
    raw.pop("_source", None)
    model_type = raw.pop("model_type")
    return AutoConfig.for_model(model_type, **raw)


def build(config: Any, *, device: str) -> Any:
    """Random-weight bf16 model of `config` on `device` ("meta" builds the skeleton only)."""
    import torch
    from transformers import AutoModelForImageTextToText

    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.bfloat16)
    return model


def quantise_in_place(model: Any, *, family: Any) -> int:
    """Replace the LLM's linear layers (as vlmtrain's QLoRA would quantise) by NF4 Linear4bit; returns how many."""
    import bitsandbytes as bnb
    import torch

    from vlmtrain.models.quant import MIN_WIDTH

    head = model.get_output_embeddings()
    count = 0
    for name, module in list(model.named_modules()):
        if not isinstance(module, torch.nn.Linear) or module is head or family.find_component(name) != "llm":
            continue
        if min(module.in_features, module.out_features) < MIN_WIDTH:
            continue
        q = bnb.nn.Linear4bit(module.in_features, module.out_features, bias=module.bias is not None,
                              compute_dtype=torch.bfloat16, quant_type="nf4", compress_statistics=True,
                              device="meta")
        q.weight = bnb.nn.Params4bit(module.weight.data.to("cpu"), requires_grad=False, quant_type="nf4",
                                     compress_statistics=True).to(module.weight.device)
        if module.bias is not None:
            q.bias = torch.nn.Parameter(module.bias.data, requires_grad=False)
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent), leaf, q)
        count += 1
    return count


def inputs(config: Any, *, device: str) -> dict[str, Any]:
    """One row of TOKENS tokens with one image, as the family's processor would give it (shapes, ids)."""
    import torch

    kind = config.model_type
    g = torch.Generator().manual_seed(0)
    vocab = getattr(config, "text_config", config).vocab_size

    def ids_with(image_id: int, n_image: int, extra: int = 0) -> torch.Tensor:
        text = torch.randint(10, min(vocab, 100000), (TOKENS - n_image,), generator=g)
        return torch.cat([text[:8], torch.full((n_image,), image_id), text[8:]])[None]

    if kind in ("qwen2_5_vl", "qwen3_vl"):
        patch, merge = config.vision_config.patch_size, config.vision_config.spatial_merge_size
        grid = 448 // patch // merge * merge  # a 448 x 448 photo
        thw = torch.tensor([[1, grid, grid]])
        n = grid * grid // merge**2
        pixels = torch.randn(grid * grid, 3 * 2 * patch * patch, generator=g)
        out = {"input_ids": ids_with(config.image_token_id, n), "pixel_values": pixels, "image_grid_thw": thw}
    elif kind == "gemma3":
        size = config.vision_config.image_size
        n = config.mm_tokens_per_image
        out = {"input_ids": ids_with(config.image_token_index, n),
               "pixel_values": torch.randn(1, 3, size, size, generator=g),
               "token_type_ids": None}
        out["token_type_ids"] = (out["input_ids"] == config.image_token_index).long()
    elif kind == "mllama":
        size, tiles = config.vision_config.image_size, config.vision_config.max_num_tiles
        ids = ids_with(config.image_token_index, 1)
        cross = torch.zeros(1, TOKENS, 1, tiles, dtype=torch.long)
        cross[:, 8:, :, :] = 1  # every token after the image attends to its tiles
        out = {"input_ids": ids, "pixel_values": torch.randn(1, 1, tiles, 3, size, size, generator=g),
               "aspect_ratio_ids": torch.tensor([[6]]), "aspect_ratio_mask": torch.ones(1, 1, tiles, dtype=torch.long),
               "cross_attention_mask": cross}
    else:
        raise ValueError(f"no input builder for {kind}")
    out["attention_mask"] = torch.ones_like(out["input_ids"])
    labels = out["input_ids"].clone()
    labels[:, : TOKENS // 2] = -100  # the second half is "the answer"
    out["labels"] = labels
    return {k: (v.to(device, dtype=torch.bfloat16) if v.is_floating_point() else v.to(device)) for k, v in out.items()}


def run_one(*, name: str, method: str, steps: int) -> dict[str, Any]:
    import torch
    from peft import LoraConfig, get_peft_model

    from vlmtrain.models.families import family_of

    config = load_config(name)
    family = family_of(config.model_type)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    model = build(config, device="cuda")
    if method == "qlora":
        quantise_in_place(model, family=family)
    model.requires_grad_(False)
    targets = [n for n, m in model.named_modules()
               if family.find_component(n) == "llm" and type(m).__name__ in ("Linear", "Linear4bit")
               and m is not model.get_output_embeddings()]
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, target_modules=targets, lora_dropout=0.0))
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    weights = torch.cuda.memory_allocated()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = inputs(config, device="cuda")
    model.train()
    loss = None
    for step in range(steps + 2):  # 2 warm-up steps
        if step == 2:
            torch.cuda.synchronize()
            start = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = model(**batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated()
    result = {"model": name, "method": method, "weights_gib": weights / 2**30, "activations_gib": (peak - weights) / 2**30,
              "peak_gib": peak / 2**30, "tokens_per_s": steps * TOKENS / seconds, "loss": float(loss)}
    del model, optimizer, batch
    torch.cuda.empty_cache()
    return result


def dry_run(names: list[str]) -> None:
    """CPU-safe: build each model on the meta device, check every parameter has a component, count them."""
    from vlmtrain.models.families import family_of

    for name in names:
        config = load_config(name)
        family = family_of(config.model_type)
        model = build(config, device="meta")
        params = dict(model.named_parameters())
        family.check_coverage(params)
        per = {}
        for n, p in params.items():
            per[family.component_of(n)] = per.get(family.component_of(n), 0) + p.numel()
        total = sum(per.values())
        llm = per.get("llm", 0) + per.get("cross_attention", 0)
        print(f"{name:<16} {total / 1e9:6.2f} B params  " + "  ".join(f"{c} {n / 1e9:.2f} B" for c, n in per.items())
              + f"  | bf16 weights {total * 2 / 2**30:5.1f} GiB, NF4 LLM ~{(total - llm) * 2 / 2**30 + llm * 0.53 / 2**30:5.1f} GiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", help="config name(s) under benchmarks/configs (default: all)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--dry-run", action="store_true", help="CPU: meta-device build and parameter counts only")
    args = parser.parse_args()
    names = args.only or sorted(p.stem for p in CONFIGS.glob("*.json"))
    if args.dry_run:
        dry_run(names)
        return
    import torch

    if not torch.cuda.is_available():
        raise SystemExit("gpu_realsize.py needs a CUDA GPU; use --dry-run on a CPU machine")
    print(f"{'model':<16} {'method':<6} {'weights':>8} {'activ.':>8} {'peak':>8} {'tok/s':>8} {'loss':>7}")
    for name in names:
        rows = {m: run_one(name=name, method=m, steps=args.steps) for m in ("lora", "qlora")}
        for r in rows.values():
            print(f"{r['model']:<16} {r['method']:<6} {r['weights_gib']:7.2f}G {r['activations_gib']:7.2f}G "
                  f"{r['peak_gib']:7.2f}G {r['tokens_per_s']:8.0f} {r['loss']:7.3f}")
        q, lo = rows["qlora"], rows["lora"]
        print(f"{name:<16} ratio qlora/lora: peak {q['peak_gib'] / lo['peak_gib']:.2f}x, weights "
              f"{q['weights_gib'] / lo['weights_gib']:.2f}x, tokens/s {q['tokens_per_s'] / lo['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()
