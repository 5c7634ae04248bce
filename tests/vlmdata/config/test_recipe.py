"""Recipe loading: every problem at once with its YAML path and a did-you-mean; extends, ${VAR}, --set."""

from __future__ import annotations

from pathlib import Path

import pytest
from vlmdata_kit import Workspace

from vlmdata.config.errors import ConfigError
from vlmdata.sources.dicom import DicomSpec
from vlmdata.sources.tabular import JsonlSpec


def problems_of(ws: Workspace, recipe: dict | str, *, overrides: tuple[str, ...] = ()) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        ws.load(ws.recipe(recipe), overrides=overrides)
    err = info.value
    assert str(err).startswith(f"{len(err.problems)} problem(s) in recipe")
    for p in err.problems:
        assert f"  - {p}" in str(err)
    out: dict[str, str] = {}
    for p in err.problems:  # several problems at one path (e.g. --set) are joined
        out[p.path] = f"{out[p.path]} | {p.message}" if p.path in out else p.message
    return out


@pytest.fixture
def data(ws: Workspace) -> Path:
    ws.image("imgs/a.png")
    return ws.jsonl("qa.jsonl", [{"image": "imgs/a.png", "question": "q?", "answers": ["a"]}])


def test_every_structural_problem_is_reported_at_once_with_path_and_hint(ws: Workspace, data: Path) -> None:
    problems = problems_of(ws, {
        "name": "broken",
        "seed": "zero",
        "sources": [
            {"name": "a", "kind": "jsonl", "path": "qa.jsonl"},
            {"name": "b", "kind": "jsonl", "path": "qa.jsonl", "fields": {"imgae": "img"}},
            {"name": "c", "kind": "jsnl", "path": "qa.jsonl"},
            {"name": "d", "kind": "jsonl", "path": "missing.jsonl"},
            {"name": "e", "kind": "csv", "path": "qa.jsonl", "limit": 0},
        ],
        "instruct": {"vqa": {"template": "medical/reprot"}, "caption": {"sufix": "x"}},
        "outptu": {"path": "out"},
    })
    assert set(problems) == {"seed", "sources[1].fields.imgae", "sources[2].kind", "sources[3].path",
                             "sources[4].limit", "instruct.vqa.template", "instruct.caption.sufix", "outptu"}
    assert "integer" in problems["seed"]
    assert problems["sources[1].fields.imgae"] == "unknown key 'imgae'; did you mean 'image'?"
    assert "unknown kind 'jsnl'; did you mean 'jsonl'?" in problems["sources[2].kind"]
    for kind in ("jsonl", "json", "csv", "parquet", "hf", "imagefolder", "llava", "dicom"):
        assert kind in problems["sources[2].kind"].split("choose from:")[1]
    assert problems["sources[3].path"] == f"path not found: {ws.root / 'missing.jsonl'}"
    assert "greater than or equal to 1" in problems["sources[4].limit"]
    assert "template 'medical/reprot' not found; did you mean 'medical/report'?" in problems["instruct.vqa.template"]
    assert "did you mean 'suffix'?" in problems["instruct.caption.sufix"]
    assert "did you mean 'output'?" in problems["outptu"]


def test_unknown_key_without_a_close_match_lists_the_allowed_keys(ws: Workspace, data: Path) -> None:
    problems = problems_of(ws, {"name": "t", "sources": [{"name": "a", "kind": "jsonl", "path": "qa.jsonl", "zzz": 1}]})
    message = problems["sources[0].zzz"]
    assert "did you mean" not in message
    assert "(allowed:" in message and "image_root" in message and "path" in message


def test_missing_required_keys_and_wrong_types(ws: Workspace, data: Path) -> None:
    problems = problems_of(ws, {"sources": [{"kind": "jsonl", "path": "qa.jsonl", "fields": "image"}],
                                "batch_size": "many"})
    assert problems["name"] == "required key is missing"
    assert problems["sources[0].name"] == "required key is missing"
    assert "sources[0].fields" in problems
    assert "batch_size" in problems


def test_template_problems(ws: Workspace, data: Path) -> None:
    ws.write("tmpl/no_user.j2", "{% block assistant %}x{% endblock %}")
    ws.write("tmpl/syntax.j2", "{% block user %}{{ x {% endblock %}")
    problems = problems_of(ws, {"name": "t", "sources": [{"name": "a", "kind": "jsonl", "path": "qa.jsonl"}],
                                "instruct": {"a": {"template": "tmpl/no_user.j2"}, "b": {"template": "tmpl/syntax.j2"},
                                             "c": {"template": "tmpl/nothere.j2"}, "d": {"template": "zzzz/qqqq"}}})
    assert "has no {% block user %}" in problems["instruct.a.template"]
    assert "line 1" in problems["instruct.b.template"]
    assert "template 'tmpl/nothere.j2' not found" in problems["instruct.c.template"]
    assert "did you mean" not in problems["instruct.d.template"]
    assert "medical/report" in problems["instruct.d.template"]  # the shipped names are listed


def test_cross_section_problems_duplicate_names_and_dicom_without_template(ws: Workspace, data: Path) -> None:
    ws.copy(Path(__file__), "scans/readme.txt")  # the folder must exist; its content is not read
    problems = problems_of(ws, {"name": "t", "sources": [
        {"name": "a", "kind": "jsonl", "path": "qa.jsonl"},
        {"name": "a", "kind": "jsonl", "path": "qa.jsonl"},
        {"name": "scans", "kind": "dicom", "path": "scans", "task": "scan"},
    ]})
    assert problems["sources[1].name"] == "duplicate source name 'a' (also sources[0])"
    assert "instruct.scan.template" in problems["sources[2].task"]


def test_dicom_source_is_valid_with_a_template_or_labels(ws: Workspace, data: Path) -> None:
    ws.write("scans/labels.csv", "file_name,question,answer\nx.dcm,q,a\n")
    with_template = ws.load({"name": "t", "sources": [{"name": "s", "kind": "dicom", "path": "scans"}],
                             "instruct": {"report": {"template": "medical/report"}}})
    assert isinstance(with_template.recipe.sources[0], DicomSpec)
    with_labels = ws.load({"name": "t", "sources": [{"name": "s", "kind": "dicom", "path": "scans",
                                                     "labels": "scans/labels.csv", "task": "vqa"}]})
    assert with_labels.recipe.sources[0].labels == ws.root / "scans/labels.csv"


def test_extends_merges_and_keeps_base_paths_relative_to_the_base_file(ws: Workspace) -> None:
    ws.image("base/imgs/a.png")
    ws.jsonl("base/data/qa.jsonl", [{"image": "a.png", "question": "q?", "answers": ["a"]}])
    ws.write("base/caption.j2", "{% block user %}Say{% endblock %}")
    ws.recipe({
        "name": "base", "seed": 1, "description": "from base",
        "sources": [{"name": "qa", "kind": "jsonl", "path": "data/qa.jsonl", "image_root": "imgs"}],
        "instruct": {"vqa": {"suffix": "Short."}, "caption": {"template": "caption.j2"}},
        "images": {"max_side": 64},
    }, rel="base/base.yaml")
    child = ws.recipe({"extends": "../base/base.yaml", "name": "child", "seed": 2,
                       "instruct": {"vqa": {"system": "Be brief."}}, "images": {"max_pixels": 5000}},
                      rel="recipes/child.yaml")
    r = ws.load(child).recipe
    assert (r.name, r.seed, r.description) == ("child", 2, "from base")
    src = r.sources[0]
    assert src.path == ws.root / "base/data/qa.jsonl"
    assert src.image_root == ws.root / "base/imgs"
    assert r.instruct["vqa"].suffix == "Short." and r.instruct["vqa"].system == "Be brief."  # deep merge
    assert r.instruct["caption"].template == str(ws.root / "base/caption.j2")
    assert (r.images.max_side, r.images.max_pixels) == (64, 5000)
    built = ws.build(child)  # the rebased paths are really used
    assert built.rows[0]["meta"]["locator"] == "qa.jsonl:1"


def test_extends_problems(ws: Workspace, data: Path) -> None:
    ws.recipe({"extends": "b.yaml", "name": "a"}, rel="a.yaml")
    ws.recipe({"extends": "a.yaml", "name": "b"}, rel="b.yaml")
    with pytest.raises(ConfigError, match="circular extends"):
        ws.load(ws.root / "a.yaml")
    problems = problems_of(ws, {"extends": "nowhere.yaml", "name": "t"})
    assert problems["extends"].startswith("file not found")


def test_env_vars_expand_with_defaults_and_unset_ones_are_reported(ws: Workspace, data: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLMDATA_TEST_DIR", str(ws.root))
    monkeypatch.delenv("VLMDATA_TEST_UNSET", raising=False)
    r = ws.load({"name": "t", "seed": "${VLMDATA_TEST_UNSET:-7}",
                 "sources": [{"name": "a", "kind": "jsonl", "path": "${VLMDATA_TEST_DIR}/qa.jsonl",
                              "task": "${VLMDATA_TEST_UNSET:-caption}"}]}).recipe
    assert r.seed == 7
    assert r.sources[0].path == ws.root / "qa.jsonl"
    assert r.sources[0].task == "caption"
    problems = problems_of(ws, {"name": "t", "description": "${VLMDATA_TEST_UNSET}",
                                "sources": [{"name": "a", "kind": "jsonl", "path": "${VLMDATA_TEST_UNSET}/x"}]})
    assert set(problems) == {"description", "sources[0].path"}
    assert "${VLMDATA_TEST_UNSET} is not set" in problems["sources[0].path"]


def test_secret_env_values_are_redacted_from_the_manifest(ws: Workspace, data: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VLMDATA_TEST_API_KEY", "sk-very-secret-123")
    built = ws.build({"name": "t", "description": "key ${VLMDATA_TEST_API_KEY}",
                      "sources": [{"name": "a", "kind": "jsonl", "path": "qa.jsonl"}]})
    assert built.manifest["recipe"]["description"] == "key ${VLMDATA_TEST_API_KEY}"
    for f in built.path.rglob("*"):
        if f.is_file():
            assert b"sk-very-secret-123" not in f.read_bytes(), f


def test_set_overrides_apply_before_validation(ws: Workspace, data: Path) -> None:
    recipe = {"name": "t", "sources": [{"name": "a", "kind": "jsonl", "path": "qa.jsonl"},
                                       {"name": "b", "kind": "jsonl", "path": "qa.jsonl"}]}
    loaded = ws.load(recipe, overrides=["seed=5", "sources[1].task=caption", "instruct.vqa.suffix=Short.",
                                        "images.max_side=64", "name=renamed"])
    r = loaded.recipe
    assert (r.seed, r.name, r.images.max_side) == (5, "renamed", 64)
    assert [s.task for s in r.sources] == ["vqa", "caption"]
    assert r.instruct["vqa"].suffix == "Short."
    assert loaded.sha256 != ws.load(recipe).sha256  # the hash covers the overridden recipe
    problems = problems_of(ws, recipe, overrides=("no-equals-sign", "sources[5].task=x", "seed=abc"))
    assert set(problems) == {"--set"}  # --set problems stop before validation (seed=abc is not reached)
    assert "'no-equals-sign' is not key.path=value" in problems["--set"]
    assert "cannot follow '5' in sources.5.task" in problems["--set"]


def test_set_override_problems_surface_as_validation_problems(ws: Workspace, data: Path) -> None:
    problems = problems_of(ws, {"name": "t", "sources": [{"name": "a", "kind": "jsonl", "path": "qa.jsonl"}]},
                           overrides=("sources[0].kind=jsnl", "seed=abc"))
    assert "did you mean 'jsonl'?" in problems["sources[0].kind"]
    assert "integer" in problems["seed"]


def test_valid_recipe_resolves_paths_against_its_own_folder(ws: Workspace, data: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ws.path("elsewhere/x").parent)
    loaded = ws.load({"name": "t", "sources": [{"name": "a", "kind": "jsonl", "path": "qa.jsonl"}],
                      "output": {"path": "built/t"}})
    src = loaded.recipe.sources[0]
    assert isinstance(src, JsonlSpec) and src.path == ws.root / "qa.jsonl"
    assert loaded.recipe.output_path() == ws.root / "built/t"
    assert len(loaded.sha256) == 16 and loaded.sha256 == ws.load(ws.root / "recipe.yaml").sha256


def test_failed_validation_builds_nothing(ws: Workspace, data: Path) -> None:
    recipe = ws.recipe({"name": "t", "sources": [{"name": "a", "kind": "jsonl", "path": "qa.jsonl", "tsk": "x"}],
                        "output": {"path": "out/t"}})
    with pytest.raises(ConfigError):
        ws.build(recipe)
    assert not (ws.root / "out").exists()
    assert sorted(p.name for p in ws.root.iterdir()) == ["imgs", "qa.jsonl", "recipe.yaml"]
