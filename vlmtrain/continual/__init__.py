"""Continual fine-tuning: a task sequence trained one task at a time, with strategies against forgetting.

A `Strategy` has three hooks the trainer calls: `before_task`, `extra_loss` (added to each step's
loss) and `after_task`; `Combined` runs several (e.g. replay + LwF). `metrics` scores the run from the
accuracy matrix.
"""

from vlmtrain.continual.ewc import EWCStrategy
from vlmtrain.continual.lwf import LwFStrategy
from vlmtrain.continual.naive import NaiveStrategy
from vlmtrain.continual.replay import ReplayBuffer, ReplayStrategy
from vlmtrain.continual.strategy import Combined, Strategy

__all__ = ["Combined", "EWCStrategy", "LwFStrategy", "NaiveStrategy", "ReplayBuffer", "ReplayStrategy", "Strategy"]
