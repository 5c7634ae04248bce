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


# The shape of LLaVA's own published GPT-4 examples (haotian-liu/LLaVA, Apache-2.0,
# playground/data/prompts/conversation/001_conv.txt, abridged): a multi-paragraph answer with numbered
# headings, "- " bullets and trailing spaces on its lines.
LLAVA_ANSWER = (
    "Cross-country skiing and downhill skiing are two distinct types of skiing. \n"
    "\n"
    "1. Cross-Country Skiing:\n"
    "Also known as Nordic skiing, it involves traversing relatively flat terrain. \n"
    "There are two main techniques in cross-country skiing:\n"
    "- Classic: This technique involves skiing in parallel tracks.\n"
    "- Skate skiing: This technique is similar to ice skating. \n"
    "\n"
    "2. Downhill Skiing:\n"
    "Also known as alpine skiing, it involves descending slopes at high speeds. \n"
    "\n"
    "In summary, both sports require specialized equipment and techniques.")
LLAVA_CONV = ("Question:\nWhat is the skier doing?\n===\nAnswer:\nThe skier is skiing in the snow-covered hills.\n"
              "===\nQuestion:\nCan you explain cross-country and downhill skiing a bit more?\n===\nAnswer:\n"
              + LLAVA_ANSWER)


def test_qa_blocks_keep_llavas_published_text_exactly() -> None:
    pairs = parse_qa_blocks(LLAVA_CONV)
    assert pairs == [("What is the skier doing?", "The skier is skiing in the snow-covered hills."),
                     ("Can you explain cross-country and downhill skiing a bit more?", LLAVA_ANSWER)]
    assert "\n\n" in pairs[1][1]
    # Windows line ends: only the line ends change.
    assert parse_qa_blocks(LLAVA_CONV.replace("\n", "\r\n")) == pairs


@pytest.mark.parametrize("line", [
    "A. Pack the roof box.", "A-frame tents are easier to pitch.", "Q-tips are useful too.",
    "Q. Is it safe?", "A) Leave early.", "Answer. This is not a marker.", "Q: a line inside the answer",
    "Answer: also inside, since the template puts markers on their own lines", "===", "---",
])
def test_only_a_whole_marker_line_starts_a_block(line: str) -> None:
    answer = f"Here is a plan:\n\n{line}\nB. Drive north.\n\nThat is all."
    text = f"Question:\nHow do I get ready?\n===\nAnswer:\n{answer}\n===\nQuestion:\nAnd then?\n===\nAnswer:\nRest."
    assert parse_qa_blocks(text) == [("How do I get ready?", answer), ("And then?", "Rest.")]


def test_inline_markers_still_parse_but_not_lookalikes() -> None:
    text = "Q: How do I get ready?\nA: A. Pack the roof box.\nA-frame tents help.\nQ-tips too.\nQ: And then?\nA: Rest."
    assert parse_qa_blocks(text) == [("How do I get ready?", "A. Pack the roof box.\nA-frame tents help.\nQ-tips too."),
                                     ("And then?", "Rest.")]
    assert parse_qa_blocks("**Question:** Why *this*?\n**Answer:** Because of *that*.") == [
        ("Why *this*?", "Because of *that*.")]
