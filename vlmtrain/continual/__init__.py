"""Continual fine-tuning: a task sequence trained one task at a time, with strategies against forgetting.

A `Strategy` (`strategy.py`) has the hooks the continual recipe calls: `before_task`, `extra_rows`,
`extra_loss` (added to each step's loss) and `after_task`; `Combined` runs several (e.g. replay + LwF).
`registry.py` builds them by name; `metrics.py` scores a run from its accuracy matrix. Nothing is
imported here, so reading a run's metrics (`vlmtrain report`) does not import torch.
"""
