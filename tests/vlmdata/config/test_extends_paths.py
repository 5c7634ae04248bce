"""`extends:` re-bases every path field, found from the models' own field types (so new ones are covered)."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from synth_kit import coco
from vlmdata_kit import Workspace

from vlmdata.config.io import load_config_dict
from vlmdata.config.paths import Hop, path_fields
from vlmdata.recipe import Recipe, load_recipe
from vlmtrain.config.train import TrainConfig

MODELS = {"recipe": Recipe, "train": TrainConfig}
CASES = [(name, loc, route, kind) for name, model in MODELS.items() for loc, route, kind in path_fields(model)]


def _discriminators(owner: Any) -> dict[str, Any]:
    """The Literal fields with a default (e.g. a source's `kind`), so the mapping picks its union arm."""
    out = {}
    for name, info in owner.model_fields.items():
        if typing.get_origin(info.annotation) is Literal and info.default is not None and isinstance(info.default, str):
            out[info.alias or name] = info.default
    return out


def _nest(route: tuple[Hop, ...], leaf: Any) -> dict[str, Any]:
    node: dict[str, Any] = {}
    top = node
    for i, hop in enumerate(route):
        node.update(_discriminators(hop.owner))
        if i == len(route) - 1:
            node[hop.key] = leaf
            break
        child: dict[str, Any] = {}
        node[hop.key] = [child] if hop.holder == "list" else {"x": child} if hop.holder == "dict" else child
        node = child
    return top


def _dig(data: Any, route: tuple[Hop, ...]) -> Any:
    for hop in route:
        data = data[hop.key]
        if hop.holder == "list":
            data = data[0]
        elif hop.holder == "dict":
            data = data["x"]
    return data


def test_the_known_path_fields_are_found() -> None:
    found = {(name, loc) for name, loc, _, _ in CASES}
    for want in [("recipe", "sources.captions"), ("recipe", "sources.instances"), ("recipe", "sources.questions"),
                 ("recipe", "sources.annotations"), ("recipe", "synthesize.cache_dir"), ("recipe", "dedup.against"),
                 ("recipe", "output.path"), ("recipe", "synthesize.template"), ("train", "eval.data"),
                 ("train", "output.dir"), ("train", "continual.init_from"), ("train", "model.path")]:
        assert want in found


@pytest.mark.parametrize(("name", "loc", "route", "kind"), CASES,
                         ids=[f"{n}:{loc}:{r[-1].owner.__name__}" for n, loc, r, _ in CASES])
def test_extends_rebases_every_path_field(tmp_path: Path, name: str, loc: str, route: tuple[Hop, ...],
                                          kind: str) -> None:
    rel = "tpl/t.j2" if kind == "template" else "stuff/target"
    target = tmp_path / "base" / rel
    target.parent.mkdir(parents=True)
    target.mkdir() if kind == "maybe_path" else target.write_text("x")
    leaf_is_list = typing.get_origin(route[-1].owner.model_fields[route[-1].key].annotation) is list \
        if route[-1].key in route[-1].owner.model_fields else False
    base = _nest(route, [rel] if leaf_is_list else rel)
    (tmp_path / "base" / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "child").mkdir()
    (tmp_path / "child" / "child.yaml").write_text("extends: ../base/base.yaml\n")
    data, _ = load_config_dict(tmp_path / "child" / "child.yaml", model=MODELS[name])
    got = _dig(data, route)
    assert (got[0] if leaf_is_list else got) == str(target.resolve()), (loc, data)


def test_values_that_are_not_local_paths_stay(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "child").mkdir()
    base = {"name": "b", "model": {"path": "org/some-model"},
            "output": {"dir": "${RUNS:-runs}/x"}, "eval": {"data": "/abs/eval", "every": 1}}
    (tmp_path / "base" / "base.yaml").write_text(yaml.safe_dump(base))
    (tmp_path / "child" / "c.yaml").write_text("extends: ../base/base.yaml\n")
    data, _ = load_config_dict(tmp_path / "child" / "c.yaml", model=TrainConfig)
    assert data["model"]["path"] == "org/some-model"  # a hub id: no such folder next to the base
    assert data["output"]["dir"] == "runs/x" and data["eval"]["data"] == "/abs/eval"
    recipe = {"name": "b", "sources": [{"name": "s", "kind": "jsonl", "path": "a.jsonl"}],
              "instruct": {"vqa": {"template": "medical/report"}}}
    (tmp_path / "base" / "r.yaml").write_text(yaml.safe_dump(recipe))
    (tmp_path / "child" / "r.yaml").write_text("extends: ../base/r.yaml\n")
    data, _ = load_config_dict(tmp_path / "child" / "r.yaml", model=Recipe)
    assert data["instruct"]["vqa"]["template"] == "medical/report"  # a built-in name
    assert data["sources"][0]["path"] == str((tmp_path / "base" / "a.jsonl").resolve())


def test_a_coco_and_vqav2_base_in_another_folder_builds(ws: Workspace) -> None:
    paths = {k: f"../{v}" for k, v in coco(ws, n=2).items()}
    ws.write("val/q.json", json.dumps({"data_subtype": "val2014", "questions": [
        {"image_id": 1, "question": "What is it?", "question_id": 1}]}))
    ws.write("val/a.json", json.dumps({"annotations": [
        {"question_id": 1, "image_id": 1, "answers": [{"answer": "dog"}] * 10, "multiple_choice_answer": "dog"}]}))
    ws.recipe({"name": "base", "sources": [
        {"name": "coco", "kind": "coco", "task": "caption", **paths},
        {"name": "vqa", "kind": "vqav2", "questions": "../val/q.json", "annotations": "../val/a.json",
         "image_root": "../coco/images", "image_pattern": "{image_id:012d}.png"}],
        "output": {"report": False}}, rel="shared/base.yaml")
    child = ws.recipe({"extends": "../shared/base.yaml", "name": "child"}, rel="recipes/child.yaml")
    loaded = load_recipe(child)
    assert loaded.recipe.sources[0].captions == ws.root / "coco/captions.json"
    assert loaded.recipe.sources[1].annotations == ws.root / "val/a.json"
    built = ws.build(child)
    assert {r["source"] for r in built.rows} == {"coco", "vqa"}
