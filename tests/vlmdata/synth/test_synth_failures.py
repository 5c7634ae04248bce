"""Every way a request or an answer can fail lands in rejects with its reason (and the raw text when
there is one); the budget cap stops sending; a missing key or endpoint stops the build up front."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from openai_server import FakeOpenAI, Reply
from synth_kit import CONV, job, llava_recipe, serve
from vlmdata_kit import Workspace

from vlmdata.synth.client import SynthError


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    yield from serve(monkeypatch)

SCRIPT = {
    1: Reply(text="I'm sorry, but I can't help with that."),
    2: Reply(text=CONV[:30], finish_reason="length"),
    3: Reply(text="   "),
    4: Reply(garbage=True),
    5: Reply(text="Some words with no structure at all."),
    6: Reply(status=500),
    8: Reply(hang=True),
    9: Reply(status=400),
    10: Reply(text="", refusal="I will not describe this."),
    11: Reply(text="Question: How many dogs are there?\nAnswer: There are three dogs."),
}


def scripted(text: str, attempt: int) -> Reply:
    m = re.search(r"picture (\d+)\.", text)
    i = int(m.group(1)) if m else 0
    if i == 7:  # rate limited once, then fine
        return Reply(status=429, retry_after=0.05) if attempt == 0 else Reply(text=CONV)
    return SCRIPT.get(i, Reply(text=CONV))


def test_every_failure_kind_is_a_reject_with_its_reason(ws: Workspace, server: FakeOpenAI) -> None:
    server.rule = scripted
    recipe = llava_recipe(ws, n=12, jobs=[job("conversation", "llava/conversation", timeout_s=0.5, max_retries=1,
                                              grounding=True, keep_source_rows=False)])
    built = ws.build(recipe)
    by_reason = {r["reason"]: r for r in built.rejects}
    assert set(by_reason) == {"refusal", "truncated", "empty_output", "bad_response", "unparsable", "server_error",
                              "timeout", "request_error", "grounding_mismatch"}
    assert sum(r["reason"] == "refusal" for r in built.rejects) == 2
    assert by_reason["unparsable"]["raw"] == "Some words with no structure at all."
    assert by_reason["truncated"]["raw"] == CONV[:30]
    assert "3 dog but the labels have 1" in by_reason["grounding_mismatch"]["detail"]
    assert by_reason["server_error"]["detail"].endswith("(after 2 attempts)")
    assert all(r["stage"] == "synthesize" and r["job"] == "conversation" for r in built.rejects)
    assert [r["meta"]["locator"] for r in built.rows] == ["000000000007.png#7", "000000000012.png#12"]
    stage = next(s for s in built.manifest["stages"] if s["stage"] == "synthesize")
    assert stage["details"]["jobs"]["conversation"]["failures"]["server_error"] == 1


def test_budget_cap_stops_sending_and_keeps_finished_rows(ws: Workspace, server: FakeOpenAI,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    server.rule = lambda text, attempt: Reply(text=CONV, usage=(400, 100))
    cap = 0.002
    recipe = llava_recipe(ws, n=10, batch_size=3, jobs=[job(
        "conversation", "llava/conversation", max_tokens=100, max_cost_usd=cap,
        prices={"input_per_mtok": 1.0, "output_per_mtok": 4.0})])  # 400 in + 100 out = $0.0008 a request
    built = ws.build(recipe)
    details = next(s for s in built.manifest["stages"] if s["stage"] == "synthesize")["details"]["jobs"]["conversation"]
    made = [r for r in built.rows if r["task"] == "conversation"]
    exhausted = [r for r in built.rejects if r["reason"] == "budget_exhausted"]
    assert details["budget_exhausted"] and details["cost_usd"] <= cap
    assert len(made) == server.counts["chat"] == 2 and len(exhausted) == 8
    assert sum(r["meta"]["cost_usd"] for r in made) == pytest.approx(details["cost_usd"])
    assert "max_cost_usd=0.002 reached" in caplog.text


@pytest.mark.parametrize("case", ["no_key", "bad_key", "unreachable"])
def test_preflight_says_how_to_fix(ws: Workspace, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, case: str) -> None:
    if case == "no_key":
        monkeypatch.delenv("OPENAI_API_KEY")
        expected = "export OPENAI_API_KEY"
    elif case == "bad_key":
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
        expected = "refused the key in $OPENAI_API_KEY"
    else:
        monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
        expected = "cannot reach http://127.0.0.1:9/v1"
    with pytest.raises(SynthError, match=re.escape(expected)):
        ws.build(llava_recipe(ws, n=2, jobs=[job("conversation", "llava/conversation")]))
    assert server.counts["chat"] == 0


def test_cached_rerun_needs_no_key(ws: Workspace, server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = ws.recipe(llava_recipe(ws, n=2, jobs=[job("conversation", "llava/conversation")]))
    ws.build(recipe)
    monkeypatch.delenv("OPENAI_API_KEY")
    again = ws.build(recipe, out="again")
    assert len([r for r in again.rows if r["task"] == "conversation"]) == 2 and server.counts["chat"] == 2


def test_retry_after_and_backoff() -> None:
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    from vlmdata.synth.client import backoff, retry_after

    assert retry_after({"retry-after-ms": "250"}) == 0.25 and retry_after({"retry-after": "3"}) == 3.0
    later = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 < retry_after({"retry-after": later}) <= 30 and retry_after({}) is None
    assert 2.0 <= backoff(0, key="k", hint=2.0) <= 2.1
    assert backoff(3, key="k", hint=None) == backoff(3, key="k", hint=None) <= 4.0
