"""Engines run a plan's steps over batches. They never branch on a step's name."""
