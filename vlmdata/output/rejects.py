"""rejects.jsonl: every rejected row with its stage and reason, counted per source for `max_reject_ratio`."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import IO

from vlmdata.rows import Reject


class RejectLog:
    """Append-only rejects.jsonl, one JSON object per rejected row; `by_source` counts them per source and
    `reads` (filled by the engine) what each source yielded, for `max_reject_ratio`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[str] = path.open("w", encoding="utf-8")
        self.count = 0
        self.by_source: Counter[str] = Counter()
        self.reasons: dict[str, Counter[str]] = {}  # per source
        self.reads: Counter[str] = Counter()

    def add(self, reject: Reject) -> None:
        self._file.write(json.dumps(reject.to_json(), ensure_ascii=False, default=str) + "\n")
        self.count += 1
        self.by_source[reject.source] += 1
        self.reasons.setdefault(reject.source, Counter())[reject.reason] += 1

    def close(self) -> None:
        self._file.close()
