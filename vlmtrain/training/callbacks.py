"""The Trainer callbacks a config asks for, built in one place for single, staged and continual runs.

Why one place: `eval:` (generation-based evaluation every N steps) and `train.report_to`
(TensorBoard) must mean the same in every kind of run; a recipe that wired its own would drift and
silently ignore them. Every recipe takes them through `FinetuneRecipe.callbacks`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlmtrain.config.train import TrainConfig
from vlmtrain.data.dataset import open_split


def tracker_callbacks(*, config: TrainConfig, folder: Path) -> list[Any]:
    """TensorBoard (`train.report_to: [tensorboard]`), writing to FOLDER/tensorboard."""
    if "tensorboard" not in config.train.report_to:
        return []
    from torch.utils.tensorboard import SummaryWriter
    from transformers.integrations import TensorBoardCallback

    return [TensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(Path(folder) / "tensorboard")))]


def eval_callbacks(*, config: TrainConfig, processor: Any, log_path: Path) -> list[Any]:
    """The evaluation-during-training callback when the config has an `eval:` section (scores go to `log_path`)."""
    ev = config.eval
    if ev is None:
        return []
    from vlmtrain.training.eval_callback import EvalCallback  # torch/transformers: only with `eval:`

    dataset = open_split(path=ev.data, split=ev.split)
    return [EvalCallback(dataset=dataset, processor=processor, every=ev.every, log_path=log_path,
                         limit=ev.limit, max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size)]
