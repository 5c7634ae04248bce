"""LLaVA-OneVision / LLaVA-NeXT data YAML mixtures: each sampling strategy, under the recipe seed."""

from __future__ import annotations

import json
import math

import pytest
from vlmdata_kit import Workspace

from vlmdata.config.errors import ConfigError
from vlmdata.sources.llava_onevision import kept_indices


def _items(prefix: str, n: int, *, image: bool = True) -> list[dict]:
    out = []
    for i in range(n):
        conv = [{"from": "human", "value": ("<image>\n" if image else "") + f"{prefix} question {i}?"},
                {"from": "gpt", "value": f"{prefix} answer {i}."}]
        out.append({"id": f"{prefix}{i}", **({"image": "a.png"} if image else {}), "conversations": conv})
    return out


@pytest.fixture
def mixture(ws: Workspace):
    ws.image("mix/images/a.png", seed=1)
    ws.write("mix/a.json", json.dumps(_items("a", 20)))
    ws.write("mix/b.jsonl", "".join(json.dumps(x) + "\n" for x in _items("b", 10, image=False)))
    ws.write("mix/c.json", json.dumps(_items("c", 30)))
    ws.write("mix/d.json", json.dumps(_items("d", 7)))
    ws.write("mix/data.yaml", "datasets:\n"
             "  - {json_path: a.json, sampling_strategy: 'first:10%'}\n"
             "  - {json_path: b.jsonl, sampling_strategy: 'end:3'}\n"
             "  - {json_path: c.json, sampling_strategy: 'random:5'}\n"
             "  - {json_path: d.json}\n")

    def build(seed: int, out: str):
        return ws.build({"name": "ov", "seed": seed, "sources": [
            {"name": "ov", "kind": "llava_onevision", "path": "mix/data.yaml", "image_root": "mix/images"}]}, out=out)
    return build


def _questions(built, prefix: str) -> list[int]:
    qs = [m["content"][-1]["text"] for r in built.rows for m in r["messages"] if m["role"] == "user"]
    return sorted(int(q.split()[-1].rstrip("?")) for q in qs if q.startswith(prefix))


def test_each_strategy_keeps_what_llava_next_keeps(mixture) -> None:
    built = mixture(0, "out0")
    assert built.rejects == []
    assert _questions(built, "a") == [0, 1]              # first:10% of 20 = ceil(2.0)
    assert _questions(built, "b") == [7, 8, 9]           # end:3
    assert len(_questions(built, "c")) == 5              # random:5
    assert _questions(built, "d") == list(range(7))      # all
    locs = {r["meta"]["locator"] for r in built.rows}
    assert "a.json[0]" in locs and "b.jsonl[9]" in locs


def test_random_sampling_follows_the_recipe_seed(mixture) -> None:
    first, again, other = mixture(0, "s0"), mixture(0, "s0b"), mixture(1, "s1")
    assert _questions(first, "c") == _questions(again, "c")
    assert _questions(first, "c") != _questions(other, "c")
    assert _questions(first, "a") == _questions(other, "a")  # only random: depends on the seed


def test_kept_indices_percent_rounds_up() -> None:
    assert list(kept_indices(count=15, strategy="first:10%", seed=0, salt="x")) == [0, 1]  # ceil(1.5)
    assert list(kept_indices(count=15, strategy="end:100%", seed=0, salt="x")) == list(range(15))
    assert len(kept_indices(count=15, strategy="random:99", seed=0, salt="x")) == 15
    assert math.ceil(33 * 7 / 100) == len(kept_indices(count=7, strategy="random:33%", seed=3, salt="x"))


def test_bad_mixture_is_a_config_error_naming_every_entry(ws: Workspace) -> None:
    ws.write("m/a.json", "[]")
    ws.write("m/data.yaml", "datasets:\n  - {json_path: a.json, sampling_strategy: 'middle:5'}\n"
             "  - {json_path: missing.json}\n  - {sampling_strategy: all}\n")
    with pytest.raises(ConfigError) as err:
        ws.load({"name": "t", "sources": [{"name": "o", "kind": "llava_onevision", "path": "m/data.yaml"}]})
    text = str(err.value)
    assert "middle:5" in text and "missing.json" in text and "datasets[2] has no json_path" in text


def test_broken_item_is_a_reject_whatever_the_strategy(ws: Workspace) -> None:
    ws.image("m/a.png", seed=1)
    good = json.dumps(_items("a", 3))[:-1]
    ws.write("m/a.json", good + ", {\"broken\": ")
    ws.write("m/data.yaml", "datasets:\n  - {json_path: a.json, sampling_strategy: 'end:1'}\n")
    built = ws.build({"name": "t", "sources": [{"name": "o", "kind": "llava_onevision", "path": "m/data.yaml"}]})
    assert [r["reason"] for r in built.rejects] == ["malformed_line"]
    assert len(built.rows) == 1
