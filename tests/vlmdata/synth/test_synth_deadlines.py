"""`timeout_s` bounds a whole request (a server dripping one byte a second cannot hold it), and a
server's `Retry-After` is honoured up to `max_retry_after_s`."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest
from openai_server import FakeOpenAI, Reply
from synth_kit import CONV, job, llava_recipe, serve
from vlmdata_kit import Workspace


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    yield from serve(monkeypatch)


def _picture(text: str) -> int:
    m = re.search(r"picture (\d+)\.", text)
    return int(m.group(1)) if m else 0


def test_a_dripping_server_cannot_hold_a_request_past_timeout_s(ws: Workspace, server: FakeOpenAI) -> None:
    # picture 1's answer comes one byte every 0.25 s: several hundred bytes would take minutes
    server.rule = lambda text, attempt: Reply(text=CONV, drip_s=0.25) if _picture(text) == 1 else Reply(text=CONV)
    recipe = llava_recipe(ws, n=2, jobs=[job("conversation", "llava/conversation", timeout_s=1.5, max_retries=0,
                                             keep_source_rows=False)])
    started = time.monotonic()
    built = ws.build(recipe)
    took = time.monotonic() - started
    assert [r["reason"] for r in built.rejects] == ["timeout"]
    assert "timeout_s=1.5" in built.rejects[0]["detail"]
    assert len(built.rows) == 1
    assert took < 30  # the dripped answer alone would take over a minute


def test_retry_after_is_honoured_but_capped(ws: Workspace, server: FakeOpenAI) -> None:
    seen: list[float] = []

    def rule(text: str, attempt: int) -> Reply:
        seen.append(time.monotonic())
        return Reply(status=429, retry_after=3600) if attempt == 0 else Reply(text=CONV)

    server.rule = rule
    recipe = llava_recipe(ws, n=1, jobs=[job("conversation", "llava/conversation", max_retries=1,
                                             max_retry_after_s=0.4, keep_source_rows=False)])
    built = ws.build(recipe)
    assert len(built.rows) == 1 and built.rejects == []
    assert len(seen) == 2 and 0.4 <= seen[1] - seen[0] < 60  # waited the cap, not the hour asked for


def test_the_cap_is_validated(ws: Workspace) -> None:
    from vlmdata.config.errors import ConfigError

    with pytest.raises(ConfigError, match="max_retry_after_s"):
        ws.load(llava_recipe(ws, n=1, jobs=[job("conversation", "llava/conversation", max_retry_after_s=-1)]))
