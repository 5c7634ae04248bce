"""CLI start-up time: `vlmdata validate` (torch-free) against the cost of importing torch + transformers.

    python benchmarks/bench_cli_startup.py [--repeat 5]

Baseline, measured in the same run: `python -c "import torch, transformers"` — what every vlmdata
command would pay if the data side imported the training stack. Prints medians and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    py = sys.executable
    ours = timed([py, "-m", "vlmdata.cli", "validate", "recipes/medical.yaml"], args.repeat)
    bare = timed([py, "-c", "pass"], args.repeat)
    base = timed([py, "-c", "import torch, transformers"], max(1, args.repeat // 2))
    print(f"python -c pass                 : {bare:6.2f} s")
    print(f"vlmdata validate medical.yaml  : {ours:6.2f} s")
    print(f"import torch, transformers     : {base:6.2f} s  (baseline)")
    print(f"ratio baseline / vlmdata       : {base / ours:6.1f}x")


if __name__ == "__main__":
    main()
