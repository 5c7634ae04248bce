"""Shipped synthesis recipe and templates: validate, plan offline with no key, build against the server;
recipe validation names the YAML key with a did-you-mean."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai_server import FakeOpenAI
from synth_kit import FAKE_KEY, job, llava_recipe, serve
from vlmdata_kit import Workspace

from vlmdata.config.errors import ConfigError
from vlmdata.templates_lib import available_templates, check_template


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    yield from serve(monkeypatch)

ROOT = Path(__file__).resolve().parents[3]
MEDICAL_GPT = ROOT / "recipes" / "medical-gpt.yaml"


def test_shipped_synthesis_templates_check() -> None:
    for name in ("llava/conversation", "llava/detail", "llava/reasoning", "medical/vqa", "medical/findings",
                 "document/qa", "satellite/scene"):
        assert name in available_templates() and check_template(name) is None


def test_medical_gpt_plans_offline_without_key(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "OPENAI_BASE_URL")}
    out = subprocess.run([sys.executable, "-m", "vlmdata.cli", "plan", str(MEDICAL_GPT), "--show", "1",
                          "--cache", str(tmp_path)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    scans = len(list((ROOT / "examples" / "medical" / "dicom").glob("*.dcm")))  # the job reads source `scans`
    assert f"job header_vqa: model gpt-4o-mini (online), {scans} rows -> {scans} requests (0 cached)" in out.stdout
    assert "modality: computed tomography (CT)" in out.stdout and "no request was sent" in out.stdout
    assert "step 3: synthesize" in out.stdout


def test_medical_gpt_builds_against_the_server(ws: Workspace, server: FakeOpenAI) -> None:
    from vlmdata.build import build
    from vlmdata.recipe import load_recipe

    loaded = load_recipe(MEDICAL_GPT)
    assert loaded.recipe.synthesize[0].base_url() == server.base_url  # ${OPENAI_BASE_URL:-...}
    result = build(loaded, out=ws.root / "medical-gpt", progress=False)
    tasks = result.manifest["tasks"]
    scans = len(list((ROOT / "examples" / "medical" / "dicom").glob("*.dcm")))  # every file decodes; the jobs
    # read source `scans` (the ct series is not theirs)
    assert scans >= 4 and tasks["conversation"] == tasks["detail"] == scans and server.image_parts == scans
    # identical headers render identical text-only prompts: asked once, answer shared
    assert scans < server.counts["chat"] == len(server.answered) <= 2 * scans
    assert FAKE_KEY not in (ws.root / "medical-gpt" / "manifest.json").read_text()


def test_validation_names_the_key(ws: Workspace) -> None:
    with pytest.raises(ConfigError, match=r"synthesize\[0\].template: template 'llava/conversaton' not found; "
                                          r"did you mean 'llava/conversation'\?"):
        ws.load(llava_recipe(ws, n=1, jobs=[job("c", "llava/conversaton")]))
    bad = llava_recipe(ws, n=1, jobs=[job("c", "llava/conversation", **{"from": ["cocoo"]}),
                                      job("c", "llava/detail", max_cost_usd=1, model="my-local-model")])
    with pytest.raises(ConfigError) as err:
        ws.load(bad)
    text = str(err.value)
    assert "synthesize[0].from[0]: unknown source 'cocoo'; did you mean 'coco'?" in text
    assert "synthesize[1].name: duplicate job name 'c'" in text
    assert "synthesize[1].max_cost_usd: no price known for model 'my-local-model'" in text


def test_plan_counts_cached_requests(ws: Workspace, server: FakeOpenAI) -> None:
    from vlmdata.synth.planner import plan_synthesis

    recipe = ws.recipe(llava_recipe(ws, n=3, jobs=[job("conversation", "llava/conversation", n=2)]))
    before = plan_synthesis(ws.load(recipe), show=1, limit=None, cache_dir=ws.root / ".vlmdata-cache")[0]
    assert (before.requests, before.cached, server.counts["chat"]) == (6, 0, 0)
    assert before.prompt_tokens > 0 and before.cost_usd is not None and before.cost_usd > 0
    ws.build(recipe)
    after = plan_synthesis(ws.load(recipe), show=1, limit=None, cache_dir=ws.root / ".vlmdata-cache")[0]
    assert (after.requests, after.cached, after.prompt_tokens) == (6, 6, 0)
