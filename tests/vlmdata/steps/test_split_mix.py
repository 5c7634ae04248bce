"""Split (no group crosses splits, seeded, near-target fractions) and mix (temperature shares, caps, weights).

Unit tests drive the steps through key → fit → apply on synthetic row dicts, the way the engine does,
without images; one end-to-end build runs a recipe with real tiny PNGs.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from vlmdata.rows import Reject
from vlmdata.sampling import allocate, choose_rows, temperature_probs
from vlmdata.steps import split as split_mod
from vlmdata.steps.base import GlobalStep
from vlmdata.steps.mix import MixSpec, MixStep
from vlmdata.steps.split import SplitSpec, SplitStep


def run_global(step: GlobalStep, rows: list[dict[str, Any]], *, batch: int = 97):
    """Drive a GlobalStep like the local engine: key per batch, one fit, apply per batch."""
    import pyarrow as pa

    for i, r in enumerate(rows):
        r["_idx"] = i
    batches = [rows[i:i + batch] for i in range(0, len(rows), batch)]
    tables = []
    for b in batches:
        cols = step.key(b)
        cols["_idx"] = [r["_idx"] for r in b]
        tables.append(pa.table(cols))
    state = step.fit(pa.concat_tables(tables, promote_options="default"))
    out, rejects = [], []
    for b in batches:
        for o in step.apply(b, state):
            (rejects if isinstance(o, Reject) else out).append(o)
    return out, rejects, step.report(state)


def make_rows(n: int, *, seed: int = 0, n_images: int | None = None, tasks: dict[str, float] | None = None):
    """n rows; each uses 1-2 of n_images images (so images are shared by several rows)."""
    rnd = random.Random(seed)
    tasks = tasks or {"vqa": 1.0}
    names, weights = list(tasks), list(tasks.values())
    rows = []
    for i in range(n):
        imgs = [f"img{rnd.randrange(n_images)}" for _ in range(rnd.choice((1, 1, 1, 2)))] if n_images else []
        rows.append({"id": f"row{i}", "task": rnd.choices(names, weights)[0], "source": "src",
                     "image_hashes": imgs, "meta": {"locator": f"line {i}"}})
    return rows


def by_split(rows):
    out = defaultdict(list)
    for r in rows:
        out[r.get("split", "train")].append(r["id"])
    return dict(out)


# ---------------------------------------------------------------- split


def test_no_image_or_cluster_crosses_splits():
    rows = make_rows(3000, n_images=900)
    for r in rows[::7]:  # dedup's near-duplicate clusters tie different images together
        r["image_cluster"] = f"c{int(r['id'][3:]) % 40}"
    out, rejects, rep = run_global(SplitStep(spec=SplitSpec(validation=0.1, test=0.1), seed=3), rows)
    assert not rejects and len(out) == 3000
    seen: dict[str, set[str]] = defaultdict(set)
    for r in out:
        for h in r["image_hashes"]:
            seen[h].add(r["split"])
        if "image_cluster" in r:
            seen[r["image_cluster"]].add(r["split"])
    assert all(len(s) == 1 for s in seen.values())
    assert rep["shared_groups_between_splits"] == 0 and rep["shared_images_between_splits"] == 0
    assert set(rep["rows"]) == {"train", "validation", "test"} and sum(rep["rows"].values()) == 3000


def test_text_only_rows_group_by_their_id():
    rows = make_rows(400) + [{"id": "row5", "task": "vqa", "source": "src", "image_hashes": [], "meta": {}}]
    for r in rows[::2]:
        r["image_cluster"] = ""  # what dedup writes for a row without images: no shared cluster
    out, _, rep = run_global(SplitStep(spec=SplitSpec(validation=0.3), seed=0), rows)
    assert len({r["split"] for r in out if r["id"] == "row5"}) == 1
    assert rep["groups"] == 400


def test_split_is_deterministic_under_the_seed():
    def assign(seed):
        out, _, _ = run_global(SplitStep(spec=SplitSpec(validation=0.1, test=0.1), seed=seed),
                               make_rows(2000, n_images=1500))
        return {k: sorted(v) for k, v in by_split(out).items()}

    assert assign(7) == assign(7)
    assert assign(7) != assign(8)


@pytest.mark.parametrize("assign", ["fill", "hash"])
def test_realised_fractions_near_targets(assign):
    n = 5000
    out, _, rep = run_global(SplitStep(spec=SplitSpec(validation=0.05, test=0.1, assign=assign), seed=1),
                             make_rows(n, n_images=20000))
    counts = Counter(r["split"] for r in out)
    for name, frac in (("validation", 0.05), ("test", 0.1)):
        if assign == "fill":  # cut at the target: off by at most half the largest group per boundary
            assert abs(counts[name] - frac * n) <= rep["largest_group"] + 1
        else:  # binomial over groups; 4 standard errors in rows (groups here are 1-3 rows)
            assert abs(counts[name] - frac * n) <= 4 * math.sqrt(n * frac * (1 - frac)) * 2


def test_stratify_gives_each_task_its_share():
    rows = make_rows(4000, tasks={"big": 0.95, "small": 0.05}, n_images=50000)
    out, _, rep = run_global(SplitStep(spec=SplitSpec(validation=0.1, stratify_by="task"), seed=2), rows)
    for task in ("big", "small"):
        mine = [r for r in out if r["task"] == task]
        val = sum(r["split"] == "validation" for r in mine)
        assert abs(val - 0.1 * len(mine)) <= 2
    assert set(rep["strata"]) == {"big", "small"}


def test_group_by_id_reports_image_leaks_without_failing():
    rows = make_rows(1000, n_images=50)
    out, _, rep = run_global(SplitStep(spec=SplitSpec(validation=0.2, group_by="id"), seed=0), rows)
    assert rep["shared_groups_between_splits"] == 0
    assert rep["shared_images_between_splits"] > 0  # the user opted out of image grouping: reported


def test_a_leak_fails_the_build(monkeypatch):
    import numpy as np

    def broken(tokens):  # every row its own group: shared images now cross splits
        return np.arange(len(tokens)), [min(t) + str(i) for i, t in enumerate(tokens)]

    monkeypatch.setattr(split_mod, "_components", broken)
    with pytest.raises(RuntimeError, match="more than one split"):
        run_global(SplitStep(spec=SplitSpec(validation=0.3), seed=0), make_rows(500, n_images=20))


def test_split_spec_checks_fractions():
    with pytest.raises(ValueError, match="split.validation"):
        SplitSpec(validation=0.6, test=0.5)
    with pytest.raises(ValueError):
        SplitSpec(group_by="pixels")


# ---------------------------------------------------------------- sampling math

COUNTS = {"a": 5000, "b": 500, "c": 50}


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0, 1e9, math.inf])
def test_temperature_probs_and_allocation(temperature):
    probs = temperature_probs(counts=COUNTS, temperature=temperature)
    raw = {t: n ** (0.0 if math.isinf(temperature) else 1 / temperature) for t, n in COUNTS.items()}
    for t in COUNTS:
        assert probs[t] == pytest.approx(raw[t] / sum(raw.values()), rel=1e-9)
    targets = allocate(total=10001, probs=probs, seed=0)
    assert sum(targets.values()) == 10001
    assert all(abs(targets[t] - 10001 * probs[t]) < 1 for t in COUNTS)  # exact up to rounding


def test_caps_weights_and_empty_tasks():
    capped = temperature_probs(counts=COUNTS, temperature=1.0, caps={"a": 500})
    assert capped["a"] == pytest.approx(capped["b"])
    full = temperature_probs(counts=COUNTS, temperature=1.0, weights={"a": 1, "b": 1, "c": 2})
    assert full == pytest.approx({"a": 0.25, "b": 0.25, "c": 0.5})
    part = temperature_probs(counts={"a": 10, "b": 10}, temperature=1.0, weights={"a": 1.5})
    assert part == pytest.approx({"a": 0.75, "b": 0.25})  # b keeps its 0.5, then renormalised
    assert temperature_probs(counts={"a": 0, "b": 3}, temperature=2.0, weights={"a": 1}) == {"b": 1.0}
    assert temperature_probs(counts={}, temperature=1.0) == {}
    with pytest.raises(ValueError, match="weight 0"):
        temperature_probs(counts={"a": 3}, temperature=1.0, weights={"a": 0, "zz": 1})


def test_choose_rows_repeats_evenly():
    c = choose_rows(n=50, k=213, seed=0, salt="c")
    assert c.sum() == 213 and set(c.tolist()) == {4, 5}
    d = choose_rows(n=500, k=100, seed=0, salt="b")
    assert d.sum() == 100 and set(d.tolist()) == {0, 1}
    assert (choose_rows(n=500, k=100, seed=1, salt="b") != d).any()


# ---------------------------------------------------------------- mix step


def mix_rows():
    rows = []
    for task, n in COUNTS.items():
        rows += [{"id": f"{task}{i}", "task": task, "source": f"s{task}", "meta": {"locator": str(i)},
                  "split": "train"} for i in range(n)]
    rows += [{"id": f"v{i}", "task": "a", "source": "sa", "meta": {}, "split": "validation"} for i in range(30)]
    return rows


@pytest.mark.parametrize("temperature", [1.0, 2.0, 5.0, 1000.0])
def test_mix_hits_the_temperature_shares(temperature):
    out, rejects, rep = run_global(MixStep(spec=MixSpec(temperature=temperature, total=3000), seed=0), mix_rows())
    train = Counter(r["task"] for r in out if r["split"] == "train")
    probs = temperature_probs(counts=COUNTS, temperature=temperature)
    assert sum(train.values()) == 3000 == rep["total"]
    for t in COUNTS:
        assert abs(train[t] - 3000 * probs[t]) < 1
        assert rep["tasks"][t]["rows"] == train[t] and rep["tasks"][t]["n"] == COUNTS[t]
        assert rep["tasks"][t]["p"] == pytest.approx(probs[t], abs=1e-6)
    assert sum(r["split"] == "validation" for r in out) == 30  # eval rows untouched
    assert len(rejects) == sum(max(0, COUNTS[t] - train[t]) for t in COUNTS)
    assert {r.reason for r in rejects} <= {"mix_undersampled"}


def test_mix_records_repeats_and_rejects_the_dropped():
    out, rejects, _ = run_global(MixStep(spec=MixSpec(temperature=2.0, total=3000), seed=0), mix_rows())
    c_rows = [r for r in out if r["task"] == "c"]
    assert len({r["id"] for r in c_rows}) == 50  # ids stay content ids
    copies = Counter(r["id"] for r in c_rows)
    assert max(copies.values()) - min(copies.values()) <= 1
    assert all(r["meta"]["mix"]["copies"] == copies[r["id"]] for r in c_rows)
    assert sorted(r["meta"]["mix"]["repeat"] for r in c_rows if r["id"] == "c0") == list(range(copies["c0"]))
    dropped = {r.row_id for r in rejects}
    assert dropped and all(d.startswith("a") for d in dropped) and not dropped & {r["id"] for r in out}


def test_mix_epochs_caps_weights_by_source_and_empty_tasks():
    _, _, rep = run_global(MixStep(spec=MixSpec(epochs=2.0), seed=0), mix_rows())
    assert rep["total"] == 2 * sum(COUNTS.values())
    spec = MixSpec(by="source", total=1000, weights={"sa": 1, "sb": 1, "sc": 2, "ghost": 5}, caps={"gone": 3})
    out, _, rep = run_global(MixStep(spec=spec, seed=0), mix_rows())
    got = Counter(r["source"] for r in out if r["split"] == "train")
    assert got == {"sa": 250, "sb": 250, "sc": 500}
    assert rep["empty"] == ["ghost", "gone"] and "ghost" in rep["note"]
    _, _, rep = run_global(MixStep(spec=MixSpec(caps={"a": 500}, total=1050), seed=0), mix_rows())
    assert rep["tasks"]["a"]["rows"] == rep["tasks"]["b"]["rows"] == 500


def test_mix_without_train_rows_does_not_crash():
    rows = [{"id": "v", "task": "a", "source": "s", "meta": {}, "split": "test"}]
    out, rejects, rep = run_global(MixStep(spec=MixSpec(total=100, weights={"a": 1}), seed=0), rows)
    assert len(out) == 1 and not rejects and rep["total"] == 0 and rep["empty"] == ["a"]


def test_mix_is_deterministic_under_the_seed():
    def kept(seed):
        out, _, _ = run_global(MixStep(spec=MixSpec(temperature=3.0, total=2000), seed=seed), mix_rows())
        return sorted(r["id"] for r in out)

    assert kept(4) == kept(4) and kept(4) != kept(5)


def test_mix_spec_errors_name_the_key():
    with pytest.raises(ValueError, match="mix.total or mix.epochs"):
        MixSpec(total=10, epochs=1.0)
    with pytest.raises(ValueError, match="mix.weights are all 0"):
        MixSpec(weights={"a": 0})
    with pytest.raises(ValueError, match="mix.caps.a"):
        MixSpec(caps={"a": 0})
    with pytest.raises(ValueError):
        MixSpec(temperature=0)


# ---------------------------------------------------------------- end to end


def _write_tiny_dataset(root: Path) -> None:
    from PIL import Image

    (root / "img").mkdir(parents=True)
    for i in range(40):
        Image.new("RGB", (16, 16), (i * 6, 255 - i * 6, (i * 37) % 256)).save(root / "img" / f"{i}.png")
    rnd = random.Random(0)
    for name, n in (("qa", 240), ("count", 30)):
        with (root / f"{name}.jsonl").open("w") as f:
            for j in range(n):
                f.write(json.dumps({"image": f"img/{rnd.randrange(40)}.png", "question": f"{name} q{j}?",
                                    "answers": [str(j)]}) + "\n")
    (root / "recipe.yaml").write_text("""\
name: tiny-split-mix
seed: 0
sources:
  - {name: qa, kind: jsonl, path: qa.jsonl, task: vqa}
  - {name: count, kind: jsonl, path: count.jsonl, task: count}
instruct:
  vqa: {suffix: "Answer briefly."}
  count: {suffix: "Answer with a number."}
split: {validation: 0.1, test: 0.1, group_by: image_cluster}
mix: {temperature: 2.0, total: 150, weights: {ghost: 1.0}}
""")


def test_build_end_to_end(tmp_path):
    import datasets
    from click.testing import CliRunner

    from vlmdata.build import build
    from vlmdata.cli import main
    from vlmdata.recipe import load_recipe

    _write_tiny_dataset(tmp_path)
    loaded = load_recipe(tmp_path / "recipe.yaml")
    res = build(loaded, out=tmp_path / "out", progress=False)
    dd = datasets.load_from_disk(str(res.path))
    assert list(dd) == ["train", "validation", "test"]
    shas = {k: {s for m in ds["meta"] for s in json.loads(m)["image_sha256"]} for k, ds in dd.items()}
    assert not shas["train"] & (shas["validation"] | shas["test"]) and not shas["validation"] & shas["test"]
    stages = {s["stage"]: s for s in res.manifest["stages"]}
    assert stages["split"]["details"]["shared_groups_between_splits"] == 0
    mix = stages["mix"]["details"]
    assert len(dd["train"]) == mix["total"] == 150 and mix["empty"] == ["ghost"]
    assert Counter(dd["train"]["task"]) == {t: g["rows"] for t, g in mix["tasks"].items()}
    metas = [json.loads(m) for m in dd["train"]["meta"]]
    assert any("mix" in m for m in metas)  # the small task is repeated
    rejects = [json.loads(line) for line in (res.path / "rejects.jsonl").read_text().splitlines()]
    dropped = sum(r["reason"] == "mix_undersampled" for r in rejects)
    assert dropped == stages["mix"]["rejected"]["mix_undersampled"] > 0
    again = build(loaded, out=tmp_path / "out2", progress=False)
    dd2 = datasets.load_from_disk(str(again.path))
    assert all(sorted(dd[k]["id"]) == sorted(dd2[k]["id"]) for k in dd)
    shown = CliRunner().invoke(main, ["inspect", str(res.path), "-n", "0"])
    assert shown.exit_code == 0, shown.output
    assert "mix by task" in shown.output and "groups shared between splits: 0" in shown.output
