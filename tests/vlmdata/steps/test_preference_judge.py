"""preference: from: judge — N candidates from a real OpenAI-compatible server on 127.0.0.1, scored by a judge
through the shipped templates; best vs worst with a margin; rejects; cache/resume; Batch API; plan; config."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner
from openai_server import FakeOpenAI, Reply, prompt_text
from synth_kit import FAKE_KEY, cached_answers, files_containing, kill_9_mid_build, serve
from vlmdata_kit import Workspace

from vlmdata.cli import main
from vlmdata.config.errors import ConfigError
from vlmdata.synth.judge_parse import parse_score, parse_verdict

# what the candidate model says for each picture, by sample (sample i is sent with seed + i)
POOLS = {
    "image 1": ["A red circle.", "A blue square.", "A red circle.", "Nothing at all."],
    "image 2": ["A green star.", "A green star on white.", "A star.", "Green star!"],
    "image 3": ["Two dots.", "Three dots.", "Two dots.", "Two dots."],
    "image 4": ["Same.", "same.", "Same. ", "Same."],
}
SCORES = {"A red circle.": 9, "A blue square.": 5, "Nothing at all.": 2,
          "A green star.": 7, "A green star on white.": 6, "A star.": 6, "Green star!": 7}
CANDIDATE_MODEL, JUDGE_MODEL = "my-sft", "gpt-4o-mini"


def _image_of(text: str) -> str:
    return re.search(r"image \d", text).group(0)


def judge_rule(body: dict[str, Any], attempt: int) -> Reply:
    text = prompt_text(body)
    if body["model"] == JUDGE_MODEL and "Answer to rate:" in text:
        answer = text.split("Answer to rate:")[1].strip()
        if _image_of(text) == "image 3":
            return Reply(text="The answer seems fine overall, hard to say.")
        return Reply(text=f"It matches the picture to a degree.\nScore: {SCORES[answer]}")
    if body["model"] == JUDGE_MODEL and "[Answer A]" in text:
        a = text.split("[Answer A]")[1].split("[Answer B]")[0].strip()
        b = text.split("[Answer B]")[1].strip()
        sa, sb = SCORES.get(a, 0), SCORES.get(b, 0)
        return Reply(text="Reasons.\n" + ("[[A]]" if sa > sb else "[[B]]" if sb > sa else "[[C]]"))
    assert body["model"] == CANDIDATE_MODEL, body["model"]
    pool = POOLS[_image_of(text)]
    return Reply(text=pool[body["seed"] % len(pool)])


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    for srv in serve(monkeypatch):
        srv.body_rule = judge_rule
        yield srv


def _recipe(ws: Workspace, *, images: int = 4, **preference: Any) -> dict[str, Any]:
    rows = []
    for i in range(1, images + 1):
        ws.image(f"imgs/{i}.png", seed=i)
        rows.append({"image": f"imgs/{i}.png", "question": f"What is in image {i}?", "answers": [f"thing {i}"]})
    ws.jsonl("qa.jsonl", rows)
    call = {"timeout_s": 5, "max_retries": 1, "concurrency": 4}
    pref = {"from": "judge", "candidates": {"model": CANDIDATE_MODEL, "n": 4, **call},
            "judge": {"model": JUDGE_MODEL, **call}, **preference}
    return {"name": "judge", "seed": 0, "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl"}],
            "preference": pref}


def _text(turns: list[dict[str, Any]]) -> str:
    return "".join(p["text"] or "" for p in turns[0]["content"] if p["type"] == "text")


def test_best_and_worst_pair_with_margin_and_every_other_row_a_counted_reject(ws: Workspace,
                                                                              server: FakeOpenAI) -> None:
    built = ws.build(ws.recipe(_recipe(ws)))
    pairs = built.rows
    assert len(pairs) == 1
    pair = pairs[0]
    assert pair["task"] == "preference" and pair["messages"][-1]["role"] == "user"
    assert _text(pair["chosen"]) == "A red circle." and _text(pair["rejected"]) == "Nothing at all."
    lineage = json.loads(pair["meta"])["preference"] if isinstance(pair["meta"], str) else pair["meta"]["preference"]
    assert lineage["from"] == "judge" and lineage["kind"] == "judge:rubric"
    assert (lineage["chosen_score"], lineage["rejected_score"], lineage["margin"]) == (9, 2, 7)
    assert lineage["candidate_model"] == CANDIDATE_MODEL and lineage["judge_model"] == JUDGE_MODEL
    assert sorted(c["score"] for c in lineage["candidates"]) == [2, 5, 9]  # "A red circle." twice: judged once

    by_reason = {r["reason"]: r for r in built.rejects}
    assert set(by_reason) == {"margin_too_small", "judge_unparseable", "too_few_candidates"}
    assert "best - worst = 1 < min_margin 2" in by_reason["margin_too_small"]["detail"]
    assert "fine overall" in by_reason["judge_unparseable"]["detail"] and "fine overall" in by_reason[
        "judge_unparseable"]["raw"]
    assert "1 distinct usable answer(s) of 4" in by_reason["too_few_candidates"]["detail"]
    stage = next(s for s in built.manifest["stages"] if s["stage"] == "preference")
    assert stage["in"] == 4 and stage["out"] == 1 and sum(stage["rejected"].values()) == 3

    # every sample is seeded (seed + i) at the candidates' temperature, and both models see the image
    cand = [b for b in server.bodies if b["model"] == CANDIDATE_MODEL]
    judge = [b for b in server.bodies if b["model"] == JUDGE_MODEL]
    assert len(cand) == 16 and sorted({b["seed"] for b in cand}) == [0, 1, 2, 3]
    assert {b["temperature"] for b in cand} == {1.0} and {b["temperature"] for b in judge} == {0.0}
    assert len(judge) == 3 + 4 + 2  # distinct candidates of images 1, 2, 3; image 4 has one, never judged
    assert all(any(p.get("type") == "image_url" for p in b["messages"][-1]["content"]) for b in cand + judge)
    details = stage["details"]
    assert details["pairs"] == 1 and details["calls"]["preference.candidates"]["requests_sent"] == 16
    assert details["calls"]["preference.judge"]["requests_sent"] == 9

    again = ws.build(ws.recipe(_recipe(ws)), out="again")  # all cached: nothing sent, same pair
    assert len(server.bodies) == 25 and [r["id"] for r in again.rows] == [pair["id"]]
    assert files_containing([ws.root], FAKE_KEY) == []  # the key reached no manifest, cache or reject


def test_min_margin_and_seeded_tie_breaks(ws: Workspace, server: FakeOpenAI) -> None:
    loose = ws.build(ws.recipe(_recipe(ws, images=2, min_margin=1)))
    by_image = {_text(p["chosen"]): p for p in loose.rows}
    assert set(by_image) >= {"A red circle."}
    star = next(p for p in loose.rows if "star" in _text(p["chosen"]).lower())
    # two candidates tie at 7 and two at 6: which of them is chosen/rejected is a seeded draw, same every build
    assert _text(star["chosen"]) in {"A green star.", "Green star!"}
    assert _text(star["rejected"]) in {"A green star on white.", "A star."}
    again = ws.build(ws.recipe(_recipe(ws, images=2, min_margin=1)), out="again")
    assert [r["id"] for r in again.rows] == [r["id"] for r in loose.rows]
    strict = ws.build(ws.recipe(_recipe(ws, images=2, min_margin=8)), out="strict")
    assert strict.rows == [] and [r["reason"] for r in strict.rejects] == ["margin_too_small"] * 2


def test_pairwise_scoring_asks_both_orders_and_pairs_by_wins(ws: Workspace, server: FakeOpenAI) -> None:
    recipe = _recipe(ws, images=1)
    recipe["preference"]["judge"]["scoring"] = "pairwise"
    built = ws.build(ws.recipe(recipe))
    assert len(built.rows) == 1
    assert _text(built.rows[0]["chosen"]) == "A red circle." and _text(built.rows[0]["rejected"]) == "Nothing at all."
    judge = [b for b in server.bodies if b["model"] == JUDGE_MODEL]
    assert len(judge) == 3 * 2  # 3 distinct candidates: every ordered pair
    lineage = built.rows[0]["meta"]["preference"] if isinstance(built.rows[0]["meta"], dict) else json.loads(
        built.rows[0]["meta"])["preference"]
    assert (lineage["chosen_score"], lineage["rejected_score"]) == (1.0, 0.0)


def test_include_reference_judges_the_rows_own_answer(ws: Workspace, server: FakeOpenAI) -> None:
    SCORES["thing 1"] = 10
    try:
        built = ws.build(ws.recipe(_recipe(ws, images=1, include_reference=True)))
    finally:
        del SCORES["thing 1"]
    assert _text(built.rows[0]["chosen"]) == "thing 1"
    lineage = built.rows[0]["meta"]["preference"] if isinstance(built.rows[0]["meta"], dict) else json.loads(
        built.rows[0]["meta"])["preference"]
    assert lineage["chosen_from"] == "reference" and lineage["rejected_from"] == "sample:3"


def test_a_failed_or_over_budget_request_rejects_the_row_and_a_rerun_pays_only_what_is_missing(
        ws: Workspace, server: FakeOpenAI) -> None:
    def flaky(body: dict[str, Any], attempt: int) -> Reply:
        if body["model"] == JUDGE_MODEL and "image 1" in prompt_text(body) and attempt < 2:
            return Reply(status=500)
        return judge_rule(body, attempt)

    server.body_rule = flaky
    recipe = _recipe(ws, images=1)
    recipe["preference"]["judge"]["max_retries"] = 0
    first = ws.build(ws.recipe(recipe))
    assert first.rows == [] and {r["reason"] for r in first.rejects} == {"server_error"}
    sent = len(server.bodies)
    server.body_rule = judge_rule
    second = ws.build(ws.recipe(recipe), out="again")
    assert len(second.rows) == 1
    candidates_again = [b for b in server.bodies[sent:] if b["model"] == CANDIDATE_MODEL]
    assert candidates_again == []  # the candidates came from the cache




def test_kill_9_then_resume_pays_no_request_twice(ws: Workspace, server: FakeOpenAI) -> None:
    server.delay = 0.1
    recipe = _recipe(ws, images=4, min_margin=1)
    recipe["batch_size"] = 1
    for call in ("candidates", "judge"):
        recipe["preference"][call]["concurrency"] = 1  # a commit seen: the next request is inside the delay
    path = ws.recipe(recipe)
    killed_with = kill_9_mid_build(ws=ws, server=server, recipe=path, answered=8, api_key=FAKE_KEY)
    assert 8 <= killed_with < 25

    built = ws.build(path)
    assert len(built.rows) == 2  # images 1 and 2 (margin 1); 3 unparseable, 4 too few
    assert len(server.answered) == 25 and set(server.answered.values()) == {1}  # each answer delivered once
    assert server.counts["chat"] == 25 + server.abandoned  # the only repeats: requests cut off in flight
    assert cached_answers(ws.root / ".vlmdata-cache" / "synth.sqlite") == 25


def test_batch_mode_for_both_calls(ws: Workspace, server: FakeOpenAI) -> None:
    recipe = _recipe(ws, images=2, min_margin=1)
    for call in ("candidates", "judge"):
        recipe["preference"][call].update(mode="batch", poll_s=0.01)
    built = ws.build(ws.recipe(recipe))
    assert len(built.rows) == 2
    assert server.counts["batches_created"] == 2 and server.counts["chat"] == 0
    assert server.counts["batch_request"] == 8 + 3 + 4
    details = next(s for s in built.manifest["stages"] if s["stage"] == "preference")["details"]["calls"]
    assert details["preference.judge"]["mode"] == "batch" and details["preference.judge"]["requests_sent"] == 7

    server.hold_batches = True  # a pending batch: rows are rejected batch_pending, the rerun attaches
    recipe["preference"]["candidates"]["temperature"] = 0.7  # new candidate requests
    recipe["preference"]["candidates"]["batch_wait_s"] = 0.05
    pending = ws.build(ws.recipe(recipe), out="pending")
    assert pending.rows == [] and {r["reason"] for r in pending.rejects} == {"batch_pending"}
    assert server.counts["batches_created"] == 3


def test_plan_counts_both_calls_and_sends_nothing(ws: Workspace, server: FakeOpenAI) -> None:
    path = ws.recipe(_recipe(ws))
    result = CliRunner().invoke(main, ["plan", str(path)])
    assert result.exit_code == 0, result.output
    assert "job preference.candidates: model my-sft (online), 4 rows -> 16 requests" in result.output
    assert "job preference.judge: model gpt-4o-mini (online), 4 rows -> 16 requests" in result.output
    assert "unknown price" in result.output  # my-sft has no price
    judge_line = next(line for line in result.output.splitlines() if line.startswith("job preference.judge"))
    assert float(re.search(r"~\$([0-9.]+)", judge_line).group(1)) > 0
    assert "What is in image 1?" in result.output  # the rendered candidate prompt
    assert server.counts["chat"] == 0 and server.counts["GET models"] == 0

    from vlmdata.synth.judge_plan import plan_judge

    recipe = _recipe(ws, include_reference=True)
    recipe["preference"]["judge"].update(scoring="pairwise", n=2, temperature=0.7)
    cand, judge = plan_judge(ws.load(ws.recipe(recipe)), show=0, limit=None)
    assert (cand.requests, judge.requests) == (4 * 4, 4 * (5 * 4) * 2)  # k = 4 + reference, ordered pairs, n = 2
    assert judge.completion_tokens == judge.requests * 400 and judge.cost_usd > 0


def test_bad_config_every_problem_at_once_with_paths_and_did_you_mean(ws: Workspace) -> None:
    recipe = _recipe(ws, images=1)
    recipe["preference"]["candidates"]["modl"] = "x"
    recipe["preference"]["candidates"]["n"] = 1
    recipe["preference"]["judge"]["scoring"] = "rubrik"
    recipe["preference"]["judge"]["template"] = "preference/judge_rubic"
    recipe["preference"]["min_margin"] = -1
    with pytest.raises(ConfigError) as err:
        ws.load(recipe)
    text = str(err.value)
    assert "preference.candidates.modl: unknown key 'modl'; did you mean 'model'?" in text
    assert "preference.candidates.n:" in text
    assert "preference.judge.scoring: unknown value 'rubrik'; did you mean 'rubric'?" in text
    assert "preference.judge.template:" in text and "judge_rubric" in text
    assert "preference.min_margin:" in text

    recipe = _recipe(ws, images=1)
    recipe["preference"]["candidates"]["max_cost_usd"] = 1
    with pytest.raises(ConfigError) as err:
        ws.load(recipe)
    text = str(err.value)
    assert "preference.candidates.max_cost_usd: no price known for model 'my-sft'" in text

    recipe = _recipe(ws, images=1)
    recipe["preference"]["candidates"]["temperature"] = 0
    recipe["preference"]["judge"]["n"] = 3
    with pytest.raises(ConfigError) as err:
        ws.load(recipe)
    assert "preference.candidates: temperature: 0 makes the 4 candidates one answer" in str(err.value)
    assert "preference.judge: n: 3 judge samples at temperature 0" in str(err.value)

    recipe = _recipe(ws, images=1)
    del recipe["preference"]["judge"]
    with pytest.raises(ConfigError, match="from: judge needs preference.judge"):
        ws.load(recipe)
    recipe = _recipe(ws, images=1)
    recipe["preference"]["from"] = "labels"
    with pytest.raises(ConfigError, match="read only with from: judge"):
        ws.load(recipe)


def test_no_key_stops_before_any_row_is_lost(ws: Workspace, server: FakeOpenAI,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = _recipe(ws, images=1)
    recipe["preference"]["candidates"]["endpoint"] = {"api_key_env": "VLLM_KEY"}
    monkeypatch.delenv("VLLM_KEY", raising=False)
    with pytest.raises(Exception, match=r"preference\.candidates \('my-sft'\): the API key variable \$VLLM_KEY"):
        ws.build(ws.recipe(recipe))
    assert not (ws.root / "out").exists()


def test_judge_parsers_take_the_last_verdict_and_refuse_what_is_off_the_scale() -> None:
    assert parse_score("On a scale of 1-10 (Score: 10 is best) ... Score: 7", low=1, high=10) == 7
    assert parse_score("Rating: [[8]]", low=1, high=10) == 8
    assert parse_score("**Score:** 6.5", low=1, high=10) == 6.5
    assert parse_score(" 4 ", low=1, high=10) == 4
    assert parse_score("I'd give it 9/10.", low=1, high=10) == 9
    for bad in ("Score: 11", "looks good", "Score: 0"):
        with pytest.raises(Exception, match="judge_unparseable"):
            parse_score(bad, low=1, high=10)
    assert parse_verdict("A is wrong ... so [[B]]") == "B"
    assert parse_verdict("[[A]] at first, but on reflection [[C]]") == "C"
    assert parse_verdict("tie") == "C"
    with pytest.raises(Exception, match="judge_unparseable"):
        parse_verdict("Both are fine.")


def test_shipped_shapes_judge_recipe_builds_against_the_server(ws: Workspace, server: FakeOpenAI,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    pool = ["red", "blue", "circle", "2", "left"]

    def rule(body: dict[str, Any], attempt: int) -> Reply:
        text = prompt_text(body)
        if "Answer to rate:" in text:
            reference = text.split("(known to be correct):")[1].split("\n")[0].strip()
            answer = text.split("Answer to rate:")[1].strip()
            return Reply(text=f"Reasons.\nScore: {9 if answer == reference else 2}")
        return Reply(text=pool[body["seed"] % len(pool)])

    server.body_rule = rule
    monkeypatch.setenv("VLLM_BASE_URL", server.base_url)
    monkeypatch.setenv("VLLM_API_KEY", FAKE_KEY)
    recipe = Path(__file__).resolve().parents[3] / "recipes" / "shapes-judge.yaml"
    built = ws.build(recipe, overrides=["sources.0.count=4"])
    pairs = built.split_rows("train") + built.split_rows("validation")
    assert pairs, built.rejects
    for pair in pairs:
        lineage = pair["meta"]["preference"] if isinstance(pair["meta"], dict) else json.loads(pair["meta"])["preference"]
        assert lineage["margin"] >= 3 and lineage["chosen_score"] == 9
        assert _text(pair["chosen"]) in pool and pair["task"] == "preference"
    stage = next(s for s in built.manifest["stages"] if s["stage"] == "preference")
    assert stage["in"] == 16 and stage["out"] + sum(stage["rejected"].values()) == 16
    assert set(stage["rejected"]) <= {"margin_too_small"}
    assert {b["model"] for b in server.bodies} == {"shapes-sft", "gpt-4o-mini"}


def test_judge_budget_is_never_overshot_and_unsent_rows_are_counted(ws: Workspace, server: FakeOpenAI) -> None:
    recipe = _recipe(ws, images=4, min_margin=1)
    recipe["preference"]["judge"].update(max_tokens=20, max_cost_usd=0.02,
                                         prices={"input_per_mtok": 10, "output_per_mtok": 10})
    built = ws.build(ws.recipe(recipe))
    stage = next(s for s in built.manifest["stages"] if s["stage"] == "preference")
    judge = stage["details"]["calls"]["preference.judge"]
    assert judge["budget_exhausted"] is True and judge["cost_usd"] <= 0.02
    assert 0 < judge["requests_sent"] < 9
    reasons = [r["reason"] for r in built.rejects]
    assert "budget_exhausted" in reasons
    assert stage["out"] + len(built.rejects) == 4


def test_unusable_candidates_are_left_out_and_counted(ws: Workspace, server: FakeOpenAI) -> None:
    def rule(body: dict[str, Any], attempt: int) -> Reply:
        if body["model"] == CANDIDATE_MODEL and body["seed"] == 1:
            return Reply(text="I'm sorry, I can't help with that.")
        if body["model"] == CANDIDATE_MODEL and body["seed"] == 2:
            return Reply(text="A red", finish_reason="length")
        return judge_rule(body, attempt)

    server.body_rule = rule
    built = ws.build(ws.recipe(_recipe(ws, images=1)))
    assert _text(built.rows[0]["chosen"]) == "A red circle." and _text(built.rows[0]["rejected"]) == "Nothing at all."
    details = next(s for s in built.manifest["stages"] if s["stage"] == "preference")["details"]
    assert details["unusable_candidates"] == {"refusal": 1, "truncated": 1}


def test_report_shows_each_side_with_its_score(ws: Workspace, server: FakeOpenAI) -> None:
    built = ws.build(ws.recipe(_recipe(ws, images=1)))
    html = (built.path / "report.html").read_text(encoding="utf-8")
    assert "chosen (9)" in html and "rejected (2)" in html and "judge:rubric" in html


def test_a_multi_turn_prompt_reaches_the_candidates_as_chat_turns(tmp_path, server: FakeOpenAI) -> None:
    from vlmdata_kit import encode, picture

    from vlmdata.schema import image_part, message, text_part
    from vlmdata.steps.preference import PreferenceSpec
    from vlmdata.steps.preference_judge import PreferenceJudgeStep

    turns = [message("user", [image_part(), text_part("Is there a shape in image 1?")]),
             message("assistant", [text_part("Yes.")]),
             message("user", [text_part("What is in image 1?")]),
             message("assistant", [text_part("A red circle.")])]
    row = {"id": "r1", "task": "conversation", "source": "s", "images": [encode(picture(1), "PNG")],
           "image_hashes": ["h1"], "image_sizes": [(32, 24)], "messages": turns, "answers": [], "fields": {},
           "context": {}, "meta": {"locator": "f:1"}}
    spec = PreferenceSpec.model_validate({"from": "judge", "candidates": {"model": CANDIDATE_MODEL, "n": 4},
                                          "judge": {"model": JUDGE_MODEL}})
    step = PreferenceJudgeStep(spec=spec, seed=0, base_dir=tmp_path, cache_dir=tmp_path / "cache")
    out = list(step.map([row]))
    assert len(out) == 1 and out[0]["messages"] == turns[:3]
    cand = next(b for b in server.bodies if b["model"] == CANDIDATE_MODEL)
    assert [m["role"] for m in cand["messages"]] == ["user", "assistant", "user"]
    assert cand["messages"][1]["content"] == "Yes." and cand["messages"][-1]["content"][-1]["text"] == "What is in image 1?"
    judge = next(b for b in server.bodies if b["model"] == JUDGE_MODEL)
    assert "Conversation so far:\nuser: Is there a shape in image 1?\nassistant: Yes." in prompt_text(judge)


def test_a_custom_judge_template_file_next_to_the_recipe(ws: Workspace, server: FakeOpenAI,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ws.write("conf/strict.j2", "{% block system %}Grade strictly.{% endblock %}\n"
                               "{% block user %}Q: {{ question }} Answer to rate: {{ response }}{% endblock %}")
    recipe = _recipe(ws, images=1)
    recipe["sources"][0]["path"] = "../qa.jsonl"
    recipe["preference"]["judge"]["template"] = "strict.j2"
    path = ws.recipe(recipe, rel="conf/recipe.yaml")
    monkeypatch.chdir(ws.root.parent)
    built = ws.build(path)
    assert len(built.rows) == 1
    judge = [b for b in server.bodies if b["model"] == JUDGE_MODEL]
    assert judge and all(b["messages"][0]["content"] == "Grade strictly." for b in judge)
    lineage = built.rows[0]["meta"]["preference"]
    assert lineage["templates"]["preference.judge"]["name"].endswith("strict.j2")
