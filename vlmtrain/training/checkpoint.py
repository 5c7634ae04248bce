"""Checkpoints and resuming: find the last `checkpoint-N` of a run and cut the log back to step N.

Why cut the log: a run killed after checkpoint N may have logged steps past N; the resumed run logs
them again, and `log.jsonl` must read as one uninterrupted run (one line per step, in order).
The Trainer restores everything else from the checkpoint: adapter weights, optimizer, scheduler, RNG
states and the step count; the data order is a pure function of the seed and the epoch (the
length-grouped sampler, or accelerate's seeded random sampler), and the Trainer skips the batches
already seen, so the resumed run continues on the same data with the same losses.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from vlmdata.config.errors import ConfigError, Problem

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def last_checkpoint(*, run_dir: Path) -> Path | None:
    """The `checkpoint-N` folder with the largest N that holds a complete Trainer state, or None."""
    found = []
    for path in Path(run_dir).glob("checkpoint-*"):
        match = _CHECKPOINT.match(path.name)
        if match and path.is_dir() and (path / "trainer_state.json").is_file():
            found.append((int(match.group(1)), path))
    return max(found)[1] if found else None


def checkpoint_step(checkpoint: Path) -> int:
    """The optimizer step a checkpoint was written at (from its `trainer_state.json`)."""
    state = json.loads((Path(checkpoint) / "trainer_state.json").read_text(encoding="utf-8"))
    return int(state["global_step"])


def require_checkpoint(*, run_dir: Path) -> Path:
    """The checkpoint to resume from; a ConfigError naming `train.save_every` when there is none."""
    checkpoint = last_checkpoint(run_dir=run_dir)
    if checkpoint is None:
        raise ConfigError(
            [Problem("train.save_every", f"--resume: no checkpoint-N in {run_dir} (set train.save_every to write them)")],
            what="resume",
        )
    return checkpoint


def trim_log(*, log_path: Path, step: int) -> int:
    """Drop the lines of `log.jsonl` logged after `step`; returns how many lines remain."""
    log_path = Path(log_path)
    if not log_path.is_file():
        log_path.write_text("", encoding="utf-8")
        return 0
    kept = [line for line in log_path.read_text(encoding="utf-8").splitlines() if line and json.loads(line)["step"] <= step]
    log_path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
    return len(kept)
