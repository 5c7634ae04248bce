"""Engines run a plan's steps over batches. They never branch on a step's name.

`base` (the `Engine` interface and the bookkeeping every engine shares), `local` (processes on this
machine), `ray` (Ray Data), `select` (the recipe's `engine.kind` → an engine), `spec` (the recipe's
`engine:` section), `packets` and `pool` (how batches travel and where worker processes come from).
"""
