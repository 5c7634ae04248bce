"""`NaiveStrategy`: plain sequential fine-tuning, the lower bound every other strategy is compared with."""

from __future__ import annotations

from vlmtrain.continual.strategy import Strategy


class NaiveStrategy(Strategy):
    """No replay, no penalty: each task simply continues training the same adapter."""
