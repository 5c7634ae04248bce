"""Mix: resample the train split so each task (or source) gets its temperature-sampling share.

    mix: {by: task, temperature: 2.0, total: 20000, caps: {vqa: 50000}, weights: {}}

Without mixing, a 1M-row VQA source drowns a 5k-row report task. With p_i ∝ n_i^(1/T) (T=1: as is,
large T: uniform) each task's train rows are cut down (without replacement; the dropped rows go to
rejects as `mix_undersampled`) or repeated (only as far as needed; each copy carries
`meta.mix = {"repeat": k, "copies": c}`, the `id` stays the content id) to exactly its share of `total`
rows (or of `epochs` × the train rows). `caps` clip n_i before the temperature (T5); `weights` replace
the temperature probabilities (see `vlmdata.sampling`). Validation and test rows pass untouched: an
eval set keeps its natural distribution. The manifest records n_i, p_i and the final rows per task.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vlmdata.rows import Reject
from vlmdata.sampling import allocate, choose_rows, temperature_probs
from vlmdata.steps.base import GlobalStep, Row

PASS = -1  # a row outside the train split: yielded as it is


# The mix stage's report (the manifest's `stages[stage == "mix"].details`) is a `MixTable`: its fields are the
# keys. `MixStep._report` writes one (`to_json`) and `mix_table` reads it back for the HTML report and
# `vlmdata inspect` (`from_json`), so no key is spelled twice.
def groups_key(by: str) -> str:
    """The key of the per-group table: "tasks" for `by: task`, "sources" for `by: source`."""
    return f"{by}s"


@dataclass(frozen=True, kw_only=True)
class MixRow:
    """One group of the mix table: n_i train rows in, p_i, final train rows, rows dropped / repeated."""

    group: str
    n: int
    n_capped: int
    p: float
    rows: int
    dropped: int
    repeated: int


@dataclass(frozen=True, kw_only=True)
class MixTable:
    """The whole mix report. `empty` (with its `note`): groups named in caps/weights without train rows."""

    by: str
    temperature: float
    seed: int
    total: int
    requested_total: int
    train_rows_in: int
    untouched_eval_rows: int
    groups: list[MixRow]
    empty: list[str] = field(default_factory=list)
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NESTED}
        out[groups_key(self.by)] = {g.group: {k: v for k, v in asdict(g).items() if k != "group"} for g in self.groups}
        if self.empty:
            out.update(empty=self.empty, note=self.note)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> MixTable:
        groups = [MixRow(group=g, **v) for g, v in (d.get(groups_key(d["by"])) or {}).items()]
        return cls(**{f.name: d[f.name] for f in fields(cls) if f.name not in _NESTED}, groups=groups,
                   empty=list(d.get("empty") or []), note=d.get("note"))


_NESTED = ("groups", "empty", "note")  # written by to_json under their own rules, not as plain fields


def mix_table(manifest: dict[str, Any]) -> MixTable | None:
    """The mix stage's table from a manifest (None when no mix stage ran)."""
    d = next((st.get("details") for st in manifest.get("stages", []) if st.get("stage") == MixStep.name
              and st.get("details")), None)
    return MixTable.from_json(d) if d else None


class MixSpec(BaseModel):
    """The recipe's `mix:` section. `total` and `epochs` exclude each other; default: 1 epoch."""

    model_config = ConfigDict(extra="forbid")
    by: Literal["task", "source"] = "task"
    temperature: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)
    total: int | None = Field(default=None, ge=1)
    epochs: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    caps: dict[str, int] = Field(default_factory=dict)
    weights: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> MixSpec:
        problems = []
        if self.total is not None and self.epochs is not None:
            problems.append("give mix.total or mix.epochs, not both")
        problems += [f"mix.caps.{k} must be >= 1, got {v}" for k, v in self.caps.items() if v < 1]
        problems += [f"mix.weights.{k} must be >= 0, got {v}" for k, v in self.weights.items() if not v >= 0]
        if self.weights and not problems and sum(self.weights.values()) <= 0:
            problems.append("mix.weights are all 0: nothing could be sampled")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class MixStep(GlobalStep):
    name: ClassVar[str] = "mix"

    def __init__(self, *, spec: MixSpec, seed: int) -> None:
        self.spec = spec
        self.seed = seed

    def key(self, batch: list[Row]) -> dict[str, list[Any]]:
        return {"group": [str(r[self.spec.by]) for r in batch],
                "train": [(r.get("split") or "train") == "train" for r in batch]}

    def fit(self, keys: Any) -> dict[str, Any]:
        """Target rows per task, then copies per row (state["copies"][_idx]; PASS outside train)."""
        import numpy as np  # here, not at the top: the recipe (and `vlmdata validate`) imports MixSpec

        groups = keys.column("group").to_pylist() if keys.num_rows else []
        train = keys.column("train").to_pylist() if keys.num_rows else []
        idx = keys.column("_idx").to_numpy() if keys.num_rows else np.zeros(0, dtype=np.int64)
        members: dict[str, list[int]] = {}
        for g, t, i in zip(groups, train, idx.tolist(), strict=True):
            if t:
                members.setdefault(g, []).append(i)
        counts = {g: len(m) for g, m in sorted(members.items())}
        try:
            probs = temperature_probs(counts=counts, temperature=self.spec.temperature, caps=self.spec.caps,
                                      weights=self.spec.weights)
        except ValueError as e:
            raise ValueError(f"mix.weights: {e}") from None
        n_train = sum(counts.values())
        total = self.spec.total if self.spec.total is not None else round((self.spec.epochs or 1.0) * n_train)
        targets = allocate(total=total if probs else 0, probs=probs, seed=self.seed)
        copies = np.full(int(idx.max()) + 1 if len(idx) else 0, PASS, dtype=np.int32)
        for g, rows in members.items():
            copies[np.asarray(rows)] = choose_rows(n=len(rows), k=targets.get(g, 0), seed=self.seed, salt=g)
        return {"copies": copies, "report": self._report(counts, probs, targets, total, len(groups) - n_train)}

    def _report(self, counts: dict[str, int], probs: dict[str, float], targets: dict[str, int], total: int,
                untouched: int) -> dict[str, Any]:
        caps = self.spec.caps
        groups = [MixRow(group=g, n=n, n_capped=min(n, caps.get(g, n)), p=round(probs.get(g, 0.0), 6),
                         rows=targets.get(g, 0), dropped=max(0, n - targets.get(g, 0)),
                         repeated=max(0, targets.get(g, 0) - n)) for g, n in counts.items()]
        empty = sorted((set(caps) | set(self.spec.weights)) - set(counts))
        note = f"named in mix.caps/mix.weights but without train rows: {', '.join(empty)}" if empty else None
        return MixTable(by=self.spec.by, temperature=self.spec.temperature, seed=self.seed,
                        total=sum(targets.values()), requested_total=total, train_rows_in=sum(counts.values()),
                        untouched_eval_rows=untouched, groups=groups, empty=empty, note=note).to_json()

    def report(self, state: dict[str, Any]) -> dict[str, Any]:
        return state["report"]

    def apply(self, batch: list[Row], state: dict[str, Any]) -> Iterator[Row | Reject]:
        copies = state["copies"]
        for row in batch:
            c = int(copies[row["_idx"]])
            if c == PASS or c == 1:
                yield row
            elif c == 0:
                meta = row.get("meta") or {}
                yield Reject(source=row.get("source", ""), locator=meta.get("locator", ""),
                             reason="mix_undersampled", detail=f"mix: {self.spec.by} '{row[self.spec.by]}' "
                             f"above its share", stage=self.name, row_id=row.get("id"))
            else:
                for k in range(c):
                    yield {**row, "meta": {**(row.get("meta") or {}), "mix": {"repeat": k, "copies": c}}}
