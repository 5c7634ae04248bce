"""Fixtures for vlmdata tests (helpers live in vlmdata_kit.py).

    def test_x(ws):
        ws.image("imgs/a.png", seed=1)
        ws.jsonl("qa.jsonl", [{"image": "imgs/a.png", "question": "q?", "answers": ["a"]}])
        built = ws.build({"name": "t", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl"}]})
        assert built.rows[0]["task"] == "vqa"
"""

from __future__ import annotations

from pathlib import Path

import pytest
from vlmdata_kit import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


@pytest.fixture(scope="module")
def module_ws(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Workspace:
    return Workspace(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]))
