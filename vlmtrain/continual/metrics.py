"""Scoring a continual run from its accuracy matrix, and plotting it.

R[i][j] = accuracy on task j after training tasks 0..i (T × T; row i is the evaluation after task i).
With the last row R[T-1] (Lopez-Paz & Ranzato 2017; Chaudhry et al. 2018):
- average accuracy = mean_j R[T-1][j];
- backward transfer BWT = mean_{j<T-1} (R[T-1][j] − R[j][j]): negative is forgetting, positive means
  later tasks helped earlier ones;
- forgetting = mean_{j<T-1} (max_{i<T-1} R[i][j] − R[T-1][j]): how far each earlier task fell from
  its best.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

Matrix = Sequence[Sequence[float]]


def _square(matrix: Matrix) -> np.ndarray:
    r = np.asarray(matrix, dtype=np.float64)
    if r.ndim != 2 or r.shape[0] != r.shape[1] or r.shape[0] == 0:
        raise ValueError(f"the accuracy matrix must be T × T with T >= 1, got shape {r.shape}")
    return r


def average_accuracy(matrix: Matrix) -> float:
    """Mean accuracy over all tasks after the last one."""
    return float(_square(matrix)[-1].mean())


def backward_transfer(matrix: Matrix) -> float:
    """BWT (0.0 for a single task)."""
    r = _square(matrix)
    t = r.shape[0]
    return float(np.mean(r[-1, : t - 1] - np.diag(r)[: t - 1])) if t > 1 else 0.0


def forgetting(matrix: Matrix) -> float:
    """Mean drop of each earlier task from its best accuracy to its final one (0.0 for a single task)."""
    r = _square(matrix)
    t = r.shape[0]
    if t == 1:
        return 0.0
    return float(np.mean(r[: t - 1, : t - 1].max(axis=0) - r[-1, : t - 1]))


def summary(matrix: Matrix) -> dict[str, float]:
    """All three numbers, for a run's metrics file."""
    return {"average_accuracy": average_accuracy(matrix), "bwt": backward_transfer(matrix),
            "forgetting": forgetting(matrix)}


def plot_matrix(*, matrix: Matrix, tasks: Sequence[str], path: Path) -> Path:
    """A heat map of R (rows: after training task i; columns: evaluated on task j), saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = _square(matrix)
    if len(tasks) != r.shape[0]:
        raise ValueError(f"{len(tasks)} task names for a {r.shape[0]} × {r.shape[0]} matrix")
    fig, ax = plt.subplots(figsize=(1.2 * len(tasks) + 2, 1.0 * len(tasks) + 1.5))
    image = ax.imshow(r, vmin=0.0, vmax=1.0, cmap="viridis")
    for i in range(r.shape[0]):
        for j in range(r.shape[1]):
            ax.text(j, i, f"{r[i, j]:.2f}", ha="center", va="center", color="w" if r[i, j] < 0.6 else "k")
    ax.set_xticks(range(len(tasks)), labels=list(tasks), rotation=30, ha="right")
    ax.set_yticks(range(len(tasks)), labels=[f"after {t}" for t in tasks])
    ax.set_xlabel("evaluated on")
    ax.set_title(f"accuracy  (avg {average_accuracy(r):.2f}, BWT {backward_transfer(r):+.2f})")
    fig.colorbar(image, ax=ax)
    return _save(fig, path)


def plot_curves(*, matrix: Matrix, tasks: Sequence[str], path: Path) -> Path:
    """One line per task j: its accuracy after each training stage i (from the stage it is trained on)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = _square(matrix)
    if len(tasks) != r.shape[0]:
        raise ValueError(f"{len(tasks)} task names for a {r.shape[0]} × {r.shape[0]} matrix")
    fig, ax = plt.subplots(figsize=(6, 4))
    stages = np.arange(r.shape[0])
    for j, name in enumerate(tasks):
        ax.plot(stages[j:], r[j:, j], marker="o", label=name)
    ax.set_xticks(stages, labels=[f"after {t}" for t in tasks], rotation=30, ha="right")
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("accuracy")
    ax.legend()
    return _save(fig, path)


def _save(fig: object, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, dpi=100)  # type: ignore[attr-defined]
    plt.close(fig)  # type: ignore[arg-type]
    return path
