"""`vlmtrain report RUN`: a run's numbers as text and PNGs, from its files alone (no model is loaded).

- continual.json → the accuracy matrix and average accuracy / BWT / forgetting as text, `matrix.png`
  (heat map of R) and `curves.png` (each stage's accuracy after every later stage);
- log.jsonl (or, for a continual run, tasks/*/log.jsonl one after another) → `losses.png`: the loss of
  each task (`loss/<task>`, or `loss`) and the learning rate against the optimizer step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vlmtrain.continual.metrics import plot_curves, plot_matrix


def matrix_text(record: dict[str, Any]) -> str:
    """R as a table (rows: after training stage i; columns: evaluated on stage j) and the summary."""
    names = record["stages"]
    width = max(10, *(len(n) + 2 for n in names))
    lines = [f"{record['metric']} (strategy: {'+'.join(record['strategy'])})",
             " " * width + "".join(f"{n:>{width}}" for n in names)]
    for name, row in zip(names, record["matrix"], strict=False):
        lines.append(f"{'after ' + name:<{width}}" + "".join(f"{v:>{width}.3f}" for v in row))
    if "bwt" in record:
        lines.append(f"average accuracy {record['average_accuracy']:.3f}   BWT {record['bwt']:+.3f}   "
                     f"forgetting {record['forgetting']:.3f}")
    return "\n".join(lines)


def read_logs(*, run_dir: Path) -> list[dict[str, Any]]:
    """Training log lines, one run after another; `step` counts on across continual stages."""
    files = sorted((run_dir / "tasks").glob("*/log.jsonl"), key=lambda p: int(p.parent.name.split("-")[0]))
    files = files or [run_dir / "log.jsonl"]
    out: list[dict[str, Any]] = []
    offset = 0
    for path in files:
        if not path.is_file():
            continue
        lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
        lines = [r for r in lines if "loss" in r]
        out.extend({**r, "step": r["step"] + offset} for r in lines)
        offset = out[-1]["step"] if out else offset
    return out


def plot_losses(*, logs: list[dict[str, Any]], path: Path) -> Path:
    """Per-task losses (top) and the learning rate (bottom) against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({k for r in logs for k in r if k.startswith("loss/")}) or ["loss"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True, height_ratios=[3, 1])
    for key in keys:
        points = [(r["step"], r[key]) for r in logs if key in r]
        top.plot([s for s, _ in points], [v for _, v in points], label=key, linewidth=1)
    top.set_ylabel("loss")
    top.legend(fontsize=7)
    bottom.plot([r["step"] for r in logs], [r.get("lr", 0.0) for r in logs], color="k", linewidth=1)
    bottom.set_ylabel("lr")
    bottom.set_xlabel("step")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report(*, run_dir: Path) -> tuple[str, list[Path]]:
    """(the text to print, the PNGs written into `run_dir`)."""
    run_dir = Path(run_dir)
    text, written = [], []
    continual = run_dir / "continual.json"
    if continual.is_file():
        record = json.loads(continual.read_text(encoding="utf-8"))
        text.append(matrix_text(record))
        if len(record["matrix"]) == len(record["stages"]):
            written.append(plot_matrix(matrix=record["matrix"], tasks=record["stages"], path=run_dir / "matrix.png"))
            written.append(plot_curves(matrix=record["matrix"], tasks=record["stages"], path=run_dir / "curves.png"))
    logs = read_logs(run_dir=run_dir)
    if logs:
        written.append(plot_losses(logs=logs, path=run_dir / "losses.png"))
        last = logs[-1]
        text.append("last logged step " + str(last["step"]) + ": " + "  ".join(
            f"{k} {v:.4f}" for k, v in sorted(last.items()) if k.startswith("loss") and isinstance(v, float)))
    if not text:
        text.append(f"{run_dir}: no continual.json or log.jsonl to report")
    return "\n".join(text), written
