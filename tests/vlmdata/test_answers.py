"""vlmdata.answers: the official VQA normalisation and accuracy, quirk by quirk, plus the opt-in helpers.

Every expected value below was derived by hand from the official script (GT-Vision-Lab/VQA,
PythonEvaluationTools/vqaEvaluation/vqaEval.py, newest version), not by running our code.
"""

from __future__ import annotations

import pytest

from vlmdata.answers import (
    canonical_yes_no,
    exact_match,
    extract_choice_letter,
    normalize_vqa,
    process_punctuation,
    vqa_accuracy,
)

NORMALIZE_CASES = [
    # whitespace: newline/tab → space, strip, words re-joined by single spaces
    ("yes", "yes"),
    ("  Two\n", "2"),
    ("\tthe dog\t", "dog"),
    ("big    dog", "big dog"),
    ("a\tb", "b"),
    ("\n", ""),
    # lowercase, number words zero..ten and none, articles
    ("Yes", "yes"),
    ("TWO", "2"),
    ("A cat", "cat"),
    ("an apple", "apple"),
    ("The End", "end"),
    ("none", "0"),
    ("None of them", "0 of them"),
    ("zero", "0"),
    ("ten", "10"),
    ("eleven", "eleven"),
    ("one hundred", "1 hundred"),
    ("twos", "twos"),
    ("ten10", "ten10"),
    ("The Two Towers", "2 towers"),
    ("a", ""),
    ("the", ""),
    # punctuation: replaced by a space unless next to a space in the original text
    ("red,blue", "red blue"),
    ("red, blue", "red blue"),
    ("red ,blue", "red blue"),
    ("up/down", "up down"),
    ("up / down", "up down"),
    ("x-ray", "x ray"),
    ("t-shirt", "t shirt"),
    ("well - maybe", "well maybe"),
    ("tennis_racket", "tennis racket"),
    ("hello;world", "hello world"),
    ("[1]", "1"),
    ("{x}", "x"),
    ("(b)", "b"),
    ("<3", "3"),
    ("@home", "home"),
    ("`code`", "code"),
    ('a "quoted" word', "quoted word"),
    ("hello!", "hello"),
    ("hello !", "hello"),
    ("what?!", "what"),
    ("a+b=c", "b c"),
    ("a/an", ""),
    ("back-slash\\", "back slash"),
    ("red, white-blue", "red white blue"),
    # the decision is made against the original text, per mark, for every occurrence of that mark
    ("x? b?c", "x bc"),
    # a digit-comma-digit anywhere deletes every mark instead of replacing it
    ("1,000", "1000"),
    ("1, 2", "1 2"),
    ("a,b,1,2", "ab12"),
    ("1,5/3", "153"),
    ("2,3 and x/y", "23 and xy"),
    ("5,000 dollars, approx", "5000 dollars approx"),
    ("1,000.5", "1000.5"),
    # not marks in the official list: colon, apostrophe, percent, dollar
    ("3:00", "3:00"),
    ("50%", "50%"),
    ("$5", "$5"),
    ("it's", "it's"),
    # periods: deleted unless a digit follows
    ("3.5", "3.5"),
    ("3.", "3"),
    (".5", ".5"),
    ("e.g.", "eg"),
    ("Mr. T", "mr t"),
    ("a.m.", "am"),
    ("2.5.", "2.5"),
    ("1.2.3", "1.2.3"),
    ("...", ""),
    # ... but at most 32 of them (re.UNICODE passed as re.sub's count)
    ("." * 32, ""),
    ("." * 33, "."),
    ("x" + "." * 40, "x" + "." * 8),
    # contractions, applied per word after articles are dropped
    ("dont", "don't"),
    ("Dont", "don't"),
    ("don't", "don't"),
    ("cant stop", "can't stop"),
    ("youre right", "you're right"),
    ("whos there", "who's there"),
    ("oclock", "o'clock"),
    ("twas", "'twas"),
    ("somebody'd", "somebodyd"),  # the table maps this one backwards
    ("Im", "im"),  # capitalised keys never match after lowercasing
    ("Ive", "ive"),
    ("I'm", "i'm"),
    ("the dont", "don't"),
    # unicode text passes through (lowercased)
    ("Café", "café"),
]


@pytest.mark.parametrize(("raw", "expected"), NORMALIZE_CASES)
def test_normalize_vqa(raw: str, expected: str) -> None:
    assert normalize_vqa(raw) == expected


def test_normalize_has_many_cases() -> None:
    assert len(NORMALIZE_CASES) >= 50


def test_punctuation_does_not_lowercase_or_split() -> None:
    assert process_punctuation("A  B,C") == "A  B C"


def _official(matches_per_subset: list[int]) -> float:
    """The script's arithmetic: min(1, float(n)/3) per leave-one-out subset, then sum / count."""
    accs = [min(1, float(n) / 3) for n in matches_per_subset]
    return float(sum(accs)) / len(accs)


def test_all_ten_agree() -> None:
    assert vqa_accuracy("yes", ["yes"] * 10) == 1.0


def test_identical_references_are_not_normalised() -> None:
    # all 10 references the same string → the script normalises neither side
    assert vqa_accuracy("Yes", ["yes"] * 10) == 0.0
    assert vqa_accuracy("2", ["two"] * 10) == 0.0
    assert vqa_accuracy("yes.", ["yes"] * 10) == 0.0


def test_differing_references_normalise_both_sides() -> None:
    assert vqa_accuracy("YES.", ["Yes"] * 9 + ["yes"]) == 1.0
    assert vqa_accuracy("Two", ["2"] * 5 + ["two"] * 5) == 1.0


def test_whitespace_is_cleaned_before_the_identity_check() -> None:
    # "yes" and "yes " are the same after cleaning → identical → no normalisation of "Yes"
    assert vqa_accuracy("Yes", ["yes", "yes "] * 5) == 0.0
    assert vqa_accuracy(" yes\n", ["yes", "yes\t"] * 5) == 1.0


@pytest.mark.parametrize(("n_match", "expected_subsets"), [
    (0, [0] * 10),
    (1, [0] + [1] * 9),
    (2, [1] * 2 + [2] * 8),
    (3, [2] * 3 + [3] * 7),
    (4, [3] * 4 + [4] * 6),
    (10, [9] * 10),
])
def test_leave_one_out_partial_credit(n_match: int, expected_subsets: list[int]) -> None:
    refs = ["2"] * n_match + ["3"] * (10 - n_match)
    assert vqa_accuracy("2", refs) == _official(expected_subsets)


def test_partial_credit_values() -> None:
    assert vqa_accuracy("2", ["2"] + ["3"] * 9) == pytest.approx(0.3)
    assert vqa_accuracy("2", ["2"] * 2 + ["3"] * 8) == pytest.approx(0.6)
    assert vqa_accuracy("2", ["2"] * 3 + ["3"] * 7) == pytest.approx(0.9)
    assert vqa_accuracy("2", ["2"] * 4 + ["3"] * 6) == 1.0


def test_one_reference_is_exact_match_after_normalisation() -> None:
    assert vqa_accuracy("The Cat.", ["cat"]) == 1.0
    assert vqa_accuracy("dog", ["cat"]) == 0.0


def test_few_references_need_all_other_humans() -> None:
    assert vqa_accuracy("cat", ["cat", "dog"]) == 0.5
    assert vqa_accuracy("cat", ["cat", "cat"]) == 1.0
    assert vqa_accuracy("cat", ["cat", "cat", "dog"]) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert vqa_accuracy("cat", ["cat"] * 4) == 1.0


def test_no_references_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one reference"):
        vqa_accuracy("cat", [])


def test_exact_match() -> None:
    assert exact_match("The Dog!", ["cat", "dog"]) == 1.0
    assert exact_match("dogs", ["cat", "dog"]) == 0.0
    assert exact_match("dog", []) == 0.0


@pytest.mark.parametrize(("raw", "expected"), [
    ("Yes.", "yes"), ("yeah", "yes"), ("True", "yes"), ("YES!", "yes"), ("Yes, it is.", "yes"),
    ("No,", "no"), ("nope", "no"), ("False", "no"), ("No. It is red.", "no"),
    ("No smoking", "No smoking"), ("maybe", "maybe"), ("yesterday", "yesterday"), ("", ""),
])
def test_canonical_yes_no(raw: str, expected: str) -> None:
    assert canonical_yes_no(raw) == expected


@pytest.mark.parametrize(("raw", "n", "expected"), [
    ("(B) cat", None, "B"), ("B.", None, "B"), ("The answer is C", None, "C"), ("b", None, "B"),
    ("A", None, "A"), ("(c)", None, "C"), ("C) red", None, "C"), ("D: blue", None, "D"),
    ("Answer: (D)", None, "D"), ("the answer is d.", None, "D"), ("I think the answer is B", None, "B"),
    ("Option B is right", None, "B"), ("It must be (C) because", None, "C"),
    ("a cat", None, None), ("no letter here", None, None), ("Option 2", None, None), ("", None, None),
    ("E", 4, None), ("D", 4, "D"), ("The answer is E", 4, None),
])
def test_extract_choice_letter(raw: str, n: int | None, expected: str | None) -> None:
    assert extract_choice_letter(raw, n) == expected
