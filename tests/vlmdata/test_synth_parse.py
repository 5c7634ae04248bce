"""Parsers and answer checks, without a server."""

from __future__ import annotations

import pytest

from vlmdata.rows import RowError
from vlmdata.synth.cache import Response
from vlmdata.synth.grounding import check_counts
from vlmdata.synth.parse import check, parse, parse_json, parse_qa_blocks


@pytest.mark.parametrize("text", [
    "Question:\nWhat is it?\n===\nAnswer:\nA cat.\n===\nQuestion:\nWhere?\n===\nAnswer:\nOn a mat.",
    "**Question:** What is it?\n**Answer:** A cat.\n\n**Question:** Where?\n**Answer:** On a mat.",
    "1. Question: What is it?\nAnswer: A cat.\n2. Question: Where?\nAnswer: On a mat.",
    "Q: What is it?\nA: A cat.\nQ: Where?\nA: On a mat.",
    "### Question 1:\nWhat is it?\n### Answer 1:\nA cat.\n---\n### Question 2:\nWhere?\n### Answer 2:\nOn a mat.",
])
def test_qa_blocks_variants(text: str) -> None:
    assert parse_qa_blocks(text) == [("What is it?", "A cat."), ("Where?", "On a mat.")]


def test_qa_blocks_keeps_multiline_answers_and_drops_a_dangling_question() -> None:
    pairs = parse_qa_blocks("Question: Why?\nAnswer: First,\nsecond.\nQuestion: And then?")
    assert pairs == [("Why?", "First,\nsecond.")]
    with pytest.raises(RowError, match="unparsable"):
        parse_qa_blocks("A cat sits on a mat.")


def test_json_shapes() -> None:
    want = [("What is it?", "A cat.")]
    assert parse_json('{"pairs": [{"question": "What is it?", "answer": "A cat."}]}') == want
    assert parse_json('```json\n[{"question": "What is it?", "answer": "A cat."}]\n```') == want
    assert parse_json('{"question": "What is it?", "answer": "A cat."}') == want
    for bad in ("not json", '{"pairs": []}', '[{"question": "q"}]'):
        with pytest.raises(RowError, match="unparsable"):
            parse_json(bad)
    assert parse("text", " A long description. ", prompt="Describe.") == [("Describe.", "A long description.")]


@pytest.mark.parametrize(("response", "reason"), [
    (Response("I'm sorry, but I can't help with that.", "stop", 1, 1), "refusal"),
    (Response("As an AI, I cannot see images.", "stop", 1, 1), "refusal"),
    (Response("", "stop", 1, 1, refusal="no"), "refusal"),
    (Response("Question: a", "length", 1, 1), "truncated"),
    (Response("  \n", "stop", 1, 1), "empty_output"),
    (Response("x", "content_filter", 1, 1), "content_filter"),
])
def test_check_rejects(response: Response, reason: str) -> None:
    with pytest.raises(RowError) as err:
        check(response)
    assert err.value.reason == reason


def test_grounding_counts() -> None:
    ctx = {"boxes": [{"category": "person", "bbox": [0, 0, 1, 1]}] * 3 + [{"category": "dog", "bbox": [0, 0, 1, 1]}]}
    check_counts([("What is there?", "Three people walk one dog."), ("How many dogs are there?", "1")], ctx)
    check_counts([("What is there?", "Two cats.")], ctx)  # not in the labels: not checked
    with pytest.raises(RowError, match="says 2 person but the labels have 3"):
        check_counts([("Who is there?", "I see 2 people.")], ctx)
    with pytest.raises(RowError, match="grounding"):
        check_counts([("How many dogs are in the park?", "There are two.")], ctx)
