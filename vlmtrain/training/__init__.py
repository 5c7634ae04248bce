"""The engine: Trainer subclasses, losses, optimiser groups, callbacks, checkpoints, process groups."""
