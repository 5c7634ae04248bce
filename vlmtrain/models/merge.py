"""Merging a run's LoRA adapter into the base weights, for serving without peft.

Why: inference servers and plain `transformers` load one folder of weights. `merge_run` folds
B @ A * alpha / r into each adapted linear layer (`merge_and_unload`) and saves the result with the
run's processor, so `AutoModelForImageTextToText.from_pretrained(OUT)` and
`AutoProcessor.from_pretrained(OUT)` load it like any checkpoint, and its logits equal the adapter
model's (up to float rounding).
"""

from __future__ import annotations

from pathlib import Path

from vlmtrain.evaluation.predict import load_run


def merge_run(*, run_dir: Path, out: Path) -> Path:
    """Write the merged model and the processor to `out`; returns `out`.

    A 4-bit (QLoRA) base cannot hold merged weights exactly; merge from a run whose `model.dtype`
    base is loaded unquantised.
    """
    model, processor = load_run(run_dir=run_dir, device="cpu")  # merged weights are saved from the CPU anyway
    merged = model.merge_and_unload()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    return out
