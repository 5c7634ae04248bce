"""Continual strategies by name: what `continual.strategy` in a training config may name.

Adding a strategy: its file (a `Strategy` subclass with `from_config`), one line here, and its name (and
options section, if it has options) in `vlmtrain.config.multitask`, which stays torch-free and so cannot
import this table; a test keeps the two name lists equal.
"""

from __future__ import annotations

from vlmtrain.config.multitask import ContinualSection
from vlmtrain.continual.ewc import EWCStrategy
from vlmtrain.continual.lwf import LwFStrategy
from vlmtrain.continual.naive import NaiveStrategy
from vlmtrain.continual.replay import ReplayStrategy
from vlmtrain.continual.strategy import Combined, Strategy

STRATEGIES: dict[str, type[Strategy]] = {
    "naive": NaiveStrategy,
    "replay": ReplayStrategy,
    "ewc": EWCStrategy,
    "lwf": LwFStrategy,
}


def build_strategy(*, continual: ContinualSection, seed: int) -> Strategy:
    """The configured strategy, built by name; several (e.g. [replay, lwf]) combine in the order given."""
    made = [STRATEGIES[name].from_config(continual=continual, seed=seed) for name in continual.strategy_names]
    return made[0] if len(made) == 1 else Combined(made)
