"""Split: train / validation / test by whole groups, so no image is shared between train and eval.

    split: {validation: 0.05, test: 0.05, group_by: image_cluster, stratify_by: task, assign: fill}

A group is a connected set of rows: two rows are in one group when they share a group token. The
tokens of a row depend on `group_by`:
- `image_cluster` (default): the dedup step's near-duplicate cluster, plus every image's pixel sha
  (without dedup, the pixel shas alone), so rows that share any image — near-duplicate or exact —
  land in one split;
- `image`: every image's pixel sha (exact duplicates only);
- `id`: the row's content id; `source_row`: the source name + its row locator;
- `scene`: the source name + the scene (or document) the row was cut from (`meta.scene`, which the
  `geotiff` and `pdf` sources write), plus every image's pixel sha, so no chip of a scene is in two
  splits; rows without a scene fall back to `image`.
Text-only rows fall back to their own id under the image-based modes.

`assign` picks how groups go to splits; both are deterministic under the recipe seed:
- `fill` (default): order groups by a seeded hash of their key (a seeded shuffle), then cut the
  cumulative row count at the target fractions; a group lands where its middle row falls, so each
  realised fraction is within half the largest group of its target. With `stratify_by`, each stratum
  (a group's majority task or source) is cut separately, so every task gets its share.
- `hash`: a group goes to the split its seeded hash falls in (u < validation → validation, ...). A group's
  split then never changes when other data is added to the recipe (stable eval sets across rebuilds),
  at the price of binomial noise in the realised fractions.

The step checks its own result: it counts tokens (clusters, images) seen in more than one split and
the build fails if that number is not 0. The manifest records the check and the realised fractions.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vlmdata.rows import Reject
from vlmdata.sampling import seeded_hash
from vlmdata.steps.base import GlobalStep, Row

if TYPE_CHECKING:  # numpy is imported inside `fit`: the recipe (and `vlmdata validate`) imports the spec
    import numpy as np

SPLITS: tuple[str, ...] = ("train", "validation", "test")


class SplitSpec(BaseModel):
    """The recipe's `split:` section (fractions of rows; train gets the rest)."""

    model_config = ConfigDict(extra="forbid")
    validation: float = Field(default=0.05, ge=0.0, lt=1.0)
    test: float = Field(default=0.0, ge=0.0, lt=1.0)
    group_by: Literal["image_cluster", "image", "id", "source_row", "scene"] = "image_cluster"
    stratify_by: Literal["task", "source"] | None = None
    assign: Literal["fill", "hash"] = "fill"

    @model_validator(mode="after")
    def _fractions(self) -> SplitSpec:
        if self.validation + self.test >= 1.0:
            raise ValueError(f"split.validation + split.test must be < 1 (train needs rows), got "
                             f"{self.validation} + {self.test}")
        return self


def group_tokens(row: Row, *, group_by: str) -> list[str]:
    """The tokens that tie `row` to other rows (see the module docstring)."""
    if group_by == "id":
        return ["r:" + row["id"]]
    if group_by == "source_row":
        return ["s:" + row["source"] + "\0" + str((row.get("meta") or {}).get("locator", row["id"]))]
    tokens = ["i:" + h for h in row.get("image_hashes") or []]
    scene = (row.get("meta") or {}).get("scene") if group_by == "scene" else None
    if scene is not None:
        tokens.append("g:" + row["source"] + "\0" + str(scene))
    if group_by == "image_cluster" and row.get("image_cluster"):  # dedup writes "" for text-only rows
        tokens.append("c:" + str(row["image_cluster"]))
    return tokens or ["r:" + row["id"]]


def _components(tokens: list[list[str]]) -> tuple[np.ndarray, list[str]]:
    """Union-find over rows sharing a token: (group index per row, key per group = its smallest token)."""
    import numpy as np

    parent = list(range(len(tokens)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, toks in enumerate(tokens):
        for t in toks:
            j = first.setdefault(t, i)
            a, b = find(i), find(j)
            if a != b:
                parent[max(a, b)] = min(a, b)
    roots = [find(i) for i in range(len(tokens))]
    index: dict[int, int] = {}
    keys: list[str] = []
    group = np.empty(len(tokens), dtype=np.int64)
    for i, r in enumerate(roots):
        g = index.setdefault(r, len(index))
        if g == len(keys):
            keys.append(min(tokens[i]))
        else:
            keys[g] = min(keys[g], *tokens[i])
        group[i] = g
    return group, keys


class SplitStep(GlobalStep):
    name: ClassVar[str] = "split"

    def __init__(self, *, spec: SplitSpec, seed: int) -> None:
        self.spec = spec
        self.seed = seed

    def key(self, batch: list[Row]) -> dict[str, list[Any]]:
        cols: dict[str, list[Any]] = {"tokens": [group_tokens(r, group_by=self.spec.group_by) for r in batch]}
        if self.spec.group_by in ("id", "source_row"):  # images are not group tokens: check them apart
            cols["images"] = [["i:" + h for h in r.get("image_hashes") or []] for r in batch]
        cols["stratum"] = [str(r[self.spec.stratify_by]) if self.spec.stratify_by else "" for r in batch]
        cols["official"] = [str((r.get("context") or {}).get("official_split") or "") for r in batch]
        return cols

    def fit(self, keys: Any) -> dict[str, Any]:
        """Assign each group a split; returns {"split": int8 code per _idx, "report": {...}}."""
        import numpy as np

        tokens = keys.column("tokens").to_pylist() if keys.num_rows else []
        idx = keys.column("_idx").to_numpy() if keys.num_rows else np.zeros(0, dtype=np.int64)
        strata = keys.column("stratum").to_pylist() if keys.num_rows else []
        group, gkeys = _components(tokens)
        sizes = np.bincount(group, minlength=len(gkeys))
        votes: list[Counter[str]] = [Counter() for _ in gkeys]
        for g, s in zip(group.tolist(), strata, strict=True):
            votes[g][s] += 1
        gstratum = [min(v.items(), key=lambda kv: (-kv[1], kv[0]))[0] for v in votes]
        gsplit = self._assign(gkeys, sizes, gstratum)
        codes = np.zeros(int(idx.max()) + 1 if len(idx) else 0, dtype=np.int8)
        codes[idx] = gsplit[group]
        shared = _shared(tokens, codes[idx])
        images = keys.column("images").to_pylist() if "images" in keys.column_names else None
        shared_images = _shared(images, codes[idx]) if images is not None else shared
        report = self._report(gsplit, sizes, codes[idx], strata, sum(shared.values()), shared_images["i"])
        if "official" in keys.column_names and any(keys.column("official").to_pylist()):
            report["official_split_leaks"] = official_split_leaks(group, keys.column("official").to_pylist())
        if sum(shared.values()):
            raise RuntimeError(f"split: {dict(shared)} group token(s) (image clusters / images / ids) ended up in "
                               f"more than one split; this is a bug in the split step")
        return {"split": codes, "report": report}

    def _assign(self, gkeys: list[str], sizes: np.ndarray, gstratum: list[str]) -> np.ndarray:
        import numpy as np

        h = np.array([seeded_hash(seed=self.seed, key=k) for k in gkeys], dtype=np.uint64)
        out = np.zeros(len(gkeys), dtype=np.int8)
        v, t = self.spec.validation, self.spec.test
        if self.spec.assign == "hash":
            u = h.astype(np.float64) / 2.0**64
            out[u < v + t] = 2
            out[u < v] = 1
            return out
        by_stratum: dict[str, list[int]] = {}
        for g, s in enumerate(gstratum):
            by_stratum.setdefault(s, []).append(g)
        for members in by_stratum.values():
            order = np.array(sorted(members, key=lambda g: (int(h[g]), gkeys[g])), dtype=np.int64)
            sz = sizes[order]
            mid = np.cumsum(sz) - sz / 2.0
            n = sz.sum()
            out[order[mid < (v + t) * n]] = 2
            out[order[mid < v * n]] = 1
        return out

    def _report(self, gsplit: np.ndarray, sizes: np.ndarray, row_codes: np.ndarray, strata: list[str],
                shared: int, shared_images: int) -> dict[str, Any]:
        rows = {SPLITS[c]: int((row_codes == c).sum()) for c in range(3)}
        n = max(1, len(row_codes))
        report: dict[str, Any] = {
            "group_by": self.spec.group_by, "assign": self.spec.assign, "seed": self.seed,
            "targets": {"validation": self.spec.validation, "test": self.spec.test},
            "groups": len(gsplit), "largest_group": int(sizes.max()) if len(sizes) else 0,
            "groups_per_split": {SPLITS[c]: int((gsplit == c).sum()) for c in range(3)},
            "rows": rows, "fractions": {k: round(x / n, 5) for k, x in rows.items()},
            "shared_groups_between_splits": shared, "shared_images_between_splits": shared_images,
        }
        if self.spec.stratify_by:
            per: dict[str, Counter[str]] = {}
            for s, c in zip(strata, row_codes.tolist(), strict=True):
                per.setdefault(s, Counter())[SPLITS[c]] += 1
            report["strata"] = {s: dict(sorted(c.items())) for s, c in sorted(per.items())}
        return report

    def report(self, state: dict[str, Any]) -> dict[str, Any]:
        return state["report"]


    def apply(self, batch: list[Row], state: dict[str, Any]) -> Iterator[Row | Reject]:
        codes = state["split"]
        for row in batch:
            row["split"] = SPLITS[codes[row["_idx"]]]
            yield row


def describe_split(details: dict[str, Any]) -> str:
    """One line from the split stage's report (`SplitStep._report`: the keys are spelled there)."""
    return (f"{details['groups']} groups by {details['group_by']}, fractions {details['fractions']}, "
            f"groups shared between splits: {details['shared_groups_between_splits']}")


def official_split_leaks(group: np.ndarray, official: list[str]) -> dict[str, Any]:
    """Groups (shared or near-duplicate images) whose rows come from more than one official split.

    Public sets (VQA-RAD, SLAKE, PathVQA) ship their own train/test splits; a group spanning several
    of them is an image the official test set shares with train. The re-split above never does that."""
    splits: dict[int, set[str]] = {}
    rows: Counter[int] = Counter()
    for g, o in zip(group.tolist(), official, strict=True):
        if o:
            splits.setdefault(g, set()).add(o)
            rows[g] += 1
    leaking = [g for g, s in splits.items() if len(s) > 1]
    pairs = Counter("/".join(sorted(splits[g])) for g in leaking)
    return {"groups": len(leaking), "rows": sum(rows[g] for g in leaking), "by_splits": dict(sorted(pairs.items()))}


def _shared(tokens: list[list[str]], codes: np.ndarray) -> Counter[str]:
    """Distinct tokens found in rows of more than one split, per kind (i image, c cluster, r id, s row).

    Must be all 0 for group tokens: that is the no-leak invariant the build checks.
    """
    seen: dict[str, int] = {}
    for toks, c in zip(tokens, codes.tolist(), strict=True):
        bit = 1 << c
        for t in toks:
            seen[t] = seen.get(t, 0) | bit
    return Counter(t[0] for t, m in seen.items() if m & (m - 1))
