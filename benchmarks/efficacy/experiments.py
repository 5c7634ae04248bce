"""The experiments of the efficacy benchmark; each trains LoRA adapters on the pretrained base and
returns its results as {row label: {column: [one value per seed]}} for the RESULTS.md tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from setup import RECIPES

VQA = ("color", "size", "shape", "count", "position")
Results = dict[str, dict[str, list[float]]]


def _config(*, name: str, overrides: Sequence[str]) -> Any:
    from vlmtrain.config.train import load_train_config

    return load_train_config(RECIPES / "train" / f"{name}.yaml", overrides=list(overrides))


def eval_rows(*, data: Path, tasks: Sequence[str], limit: int) -> Any:
    from vlmtrain.data.dataset import open_split

    dataset = open_split(path=data, split="validation")
    keep, seen = [], dict.fromkeys(tasks, 0)
    for i, task in enumerate(dataset["task"]):
        if task in seen and seen[task] < limit:
            keep.append(i)
            seen[task] += 1
    return dataset.select(keep)


# The tiny tokenizer spells some answers in many pieces ("yellow", "triangle": 6 tokens; captions up to 24),
# so generation must be allowed that many tokens or the right answer is cut off and scored wrong.
ANSWER_TOKENS = 8
CAPTION_TOKENS = 32


def _score(*, model: Any, processor: Any, rows: Any, max_new_tokens: int) -> dict[str, float]:
    from vlmtrain.evaluation.evaluate import evaluate

    metrics = evaluate(model=model, processor=processor, dataset=rows, max_new_tokens=max_new_tokens,
                       batch_size=32).metrics
    return {task: m["vqa_accuracy"] for task, m in metrics.items() if task != "overall"}


def lora_run(*, name: str, overrides: Sequence[str], rows: Any, max_new_tokens: int, echo: Any) -> dict[str, Any]:
    """Train one multitask LoRA run; its per-task accuracy, and the last log line (losses, weights)."""
    from vlmtrain.recipes.finetune import FinetuneRecipe

    recipe = FinetuneRecipe(config=_config(name=name, overrides=overrides), echo=lambda _: None)
    recipe.setup()
    run_dir = recipe.train()
    scores = _score(model=recipe.model, processor=recipe.processor, rows=rows, max_new_tokens=max_new_tokens)
    log = [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines() if x.strip()]
    echo(f"  {run_dir.name}: " + "  ".join(f"{t} {v:.2f}" for t, v in scores.items()))
    return {"scores": scores, "last": log[-1] if log else {}}


def majority(*, rows: Any) -> Results:
    """The score of always giving each task's most frequent answer: a model that ignores the image gets this."""
    from collections import Counter

    per_task: dict[str, Counter] = {}
    for task, answers in zip(rows["task"], rows["answers"], strict=True):
        per_task.setdefault(task, Counter())[answers[0]] += 1
    return {"most frequent answer (ignores the image)": {
        t: [c.most_common(1)[0][1] / sum(c.values())] for t, c in sorted(per_task.items())}}


def _add(results: Results, row: str, values: dict[str, float]) -> None:
    for column, value in values.items():
        results.setdefault(row, {}).setdefault(column, []).append(value)


def base_scores(*, base: Path, rows: Any, echo: Any) -> Results:
    """The pretrained base before any LoRA: the 'from' of experiment (a)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(str(base))
    scores = _score(model=model, processor=AutoProcessor.from_pretrained(str(base)), rows=rows, max_new_tokens=ANSWER_TOKENS)
    echo("  base: " + "  ".join(f"{t} {v:.2f}" for t, v in scores.items()))
    return {"base model (captions only), no LoRA": {t: [v] for t, v in scores.items()}}


def learns(*, common: list[str], seeds: Sequence[int], rows: Any, steps: int, echo: Any,
           label: str = "LoRA", extra: Sequence[str] = ()) -> Results:
    """(a) LoRA on the five VQA tasks at once (balanced, T=1, equal weighting); with `extra` overrides
    (e.g. `method=qlora`) the same runs with another method, for (e)."""
    results: Results = {}
    for seed in seeds:
        out = lora_run(name="efficacy-lora", overrides=[*common, f"seed={seed}", f"train.steps={steps}", *extra],
                       rows=rows, max_new_tokens=ANSWER_TOKENS, echo=echo)
        _add(results, label, {**out["scores"], "mean": sum(out["scores"].values()) / len(out["scores"])})
    return results


QLORA = ["method=qlora", "quant.bits=4", "quant.quant_type=nf4", "quant.double_quant=true"]


def temperature_label(*, steps: int, temperature: float) -> str:
    """The row of (b) for one budget and temperature (also how verdicts.py finds it)."""
    return f"{steps} steps, T={temperature:g}"


def temperature(*, common: list[str], data: Path, seeds: Sequence[int], rows: Any, budgets: Sequence[int],
                temperatures: Sequence[float], echo: Any) -> Results:
    """(b) colour:size = 20:1 training rows; for each budget of steps, the same steps at each temperature
    (a short budget starves the minority task at T=1; a long one lets every task converge anyway)."""
    results: Results = {}
    for steps in budgets:
        for t in temperatures:
            for seed in seeds:
                out = lora_run(name="efficacy-lora", overrides=[
                    *common, f"seed={seed}", f"train.steps={steps}", f"data.path={data}",
                    f"multitask.sampling.temperature={t}"], rows=rows, max_new_tokens=ANSWER_TOKENS, echo=echo)
                _add(results, temperature_label(steps=steps, temperature=t), out["scores"])
    return results


def _concat(*, vqa: Path, caption: Path) -> Path:
    """One dataset folder holding both (each split concatenated), next to `vqa`."""
    import datasets

    out = vqa.parent / "shapes+caption"
    if not (out / "dataset_dict.json").is_file():
        a, b = datasets.load_from_disk(str(vqa)), datasets.load_from_disk(str(caption))
        datasets.DatasetDict({s: datasets.concatenate_datasets([a[s], b[s].cast(a[s].features)])
                              for s in a}).save_to_disk(str(out))
    return out


def weighting(*, common: list[str], vqa: Path, caption: Path, seeds: Sequence[int], rows: Any, steps: int,
              echo: Any) -> Results:
    """(c) the five VQA tasks (one-word answers, high initial loss) with captions (long answers the base
    already knows, low loss): equal vs uncertainty weighting; scored on colour, size and captions."""
    results: Results = {}
    mixed = _concat(vqa=vqa, caption=caption)
    for mode in ("equal", "uncertainty"):
        for seed in seeds:
            out = lora_run(name="efficacy-lora", overrides=[
                *common, f"seed={seed}", f"train.steps={steps}", f"data.path={mixed}",
                f"multitask.loss.weighting={mode}"], rows=rows, max_new_tokens=CAPTION_TOKENS, echo=echo)
            last = out["last"]
            extra = {f"w({t})": last[f"weight/{t}"] for t in ("color", "size", "caption") if f"weight/{t}" in last}
            _add(results, mode, {**out["scores"], **extra})
    return results


def continual(*, common: list[str], seeds: Sequence[int], steps: int, strategies: dict[str, list[str]],
              work: Path, echo: Any) -> Results:
    """(d) colour → size → count, one stage after another, per strategy; BWT, forgetting, final accuracy."""
    from vlmtrain.recipes.run import run

    results: Results = {}
    for label, extra in strategies.items():
        for seed in seeds:
            out = work / "continual" / f"{label}-{seed}"
            config = _config(name="efficacy-continual", overrides=[
                *common, f"seed={seed}", f"train.steps={steps}", f"output.dir={out}", *extra])
            run(config=config, echo=lambda _: None)
            record = json.loads((out / "continual.json").read_text())
            echo(f"  {label} seed {seed}: BWT {record['bwt']:+.3f}  avg {record['average_accuracy']:.3f}")
            _add(results, label, {"BWT": record["bwt"], "forgetting": record["forgetting"],
                                  "final avg acc": record["average_accuracy"],
                                  **{f"R[{i}][{i}]": record["matrix"][i][i] for i in range(len(record["matrix"]))}})
    return results
