"""Answer normalisation and scoring, torch-free (vlmtrain imports this for evaluation).

`normalize_vqa` and `vqa_accuracy` reproduce the official VQA evaluation script (GT-Vision-Lab/VQA,
`PythonEvaluationTools/vqaEvaluation/vqaEval.py`, newest version) bit for bit, quirks included, so a
number computed here can be compared with published VQAv2 numbers:

- newlines and tabs become spaces, then the answer is stripped;
- punctuation: each mark of `PUNCT` is deleted when the *original* text has it next to a space or
  the text contains a digit-comma-digit anywhere ("1,000"), else it is replaced by a space; then
  every period not followed by a digit is deleted, but at most 32 of them (the script passes
  `re.UNICODE`, which is 32, where `re.sub` expects its `count`). `:` and `'` are not marks;
- words: lowercase, split on whitespace, number words zero..ten and "none" become digits, the
  articles a/an/the are dropped, then contractions are restored ("dont" → "don't"; the table's own
  quirks kept: "somebody'd" → "somebodyd", capitalised keys such as "Im" never match);
- scoring: only when the (whitespace-cleaned) references are not all the same string are the
  references *and* the prediction normalised; otherwise both are compared as they are.

The opt-in helpers (`canonical_yes_no`, `extract_choice_letter`) are not part of the official metric;
they make free-form model output comparable with yes/no and multiple-choice references.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# The official script's punctuation marks, in its order (order matters: deletion vs replacement is
# decided per mark against the original text, and each decision applies to the text so far).
PUNCT: tuple[str, ...] = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
                          ">", "<", "@", "`", ",", "?", "!")
# The script's periodStrip is "(?!<=\d)(\.)(?!\d)": its first group is a look-ahead for the literal
# "<=" + digit at the position of the period itself, which can never match, so it is a no-op.
_PERIOD = re.compile(r"\.(?!\d)")
_PERIOD_MAX = 32  # re.UNICODE passed positionally as re.sub's count
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
NUMBER_WORDS: dict[str, str] = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})
CONTRACTIONS: dict[str, str] = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've",
    "hasnt": "hasn't", "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've",
    "hes": "he's", "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've",
    "I'dve": "I'd've", "Im": "I'm", "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've",
    "it'dve": "it'd've", "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't",
    "mustve": "must've", "neednt": "needn't", "notve": "not've", "oclock": "o'clock",
    "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at",
    "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's",
    "shouldve": "should've", "shouldnt": "shouldn't", "shouldnt've": "shouldn't've",
    "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd", "somebodyd've": "somebody'd've",
    "somebody'dve": "somebody'd've", "somebodyll": "somebody'll", "somebodys": "somebody's",
    "someoned": "someone'd", "someoned've": "someone'd've", "someone'dve": "someone'd've",
    "someonell": "someone'll", "someones": "someone's", "somethingd": "something'd",
    "somethingd've": "something'd've", "something'dve": "something'd've", "somethingll": "something'll",
    "thats": "that's", "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've", "weve": "we've",
    "werent": "weren't", "whatll": "what'll", "whatre": "what're", "whats": "what's",
    "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've",
    "wholl": "who'll", "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're",
    "whys": "why's", "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't",
    "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll",
    "y'allll": "y'all'll", "yall'd've": "y'all'd've", "y'alld've": "y'all'd've",
    "y'all'dve": "y'all'd've", "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've",
    "youll": "you'll", "youre": "you're", "youve": "you've",
}


def clean_whitespace(answer: str) -> str:
    """Newlines and tabs → spaces, then strip (the only step the script applies to every answer)."""
    return answer.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """The script's punctuation rule (see the module docstring); no lowercasing, no word splitting."""
    out = text
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    for mark in PUNCT:
        if delete_all or f"{mark} " in text or f" {mark}" in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, count=_PERIOD_MAX)


def process_digit_article(text: str) -> str:
    """Lowercase; number words → digits; drop articles; restore contractions; single spaces."""
    words = [NUMBER_WORDS.get(w, w) for w in text.lower().split()]
    words = [w for w in words if w not in ARTICLES]
    return " ".join(CONTRACTIONS.get(w, w) for w in words)


def normalize_vqa(answer: str) -> str:
    """An answer as the official script compares it when normalisation applies ("Two dogs." → "2 dogs")."""
    return process_digit_article(process_punctuation(clean_whitespace(answer)))


def vqa_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """The official VQA accuracy of one prediction against its human answers, in [0, 1].

    min(#other humans who gave the prediction / 3, 1), averaged over the leave-one-out subsets of
    the references — with 10 references exactly the official number (normalisation only when the
    references differ, as in the script). Extensions for other counts, so any dataset can be scored:
    one reference → exact match after `normalize_vqa`; 2 or 3 references → the 3 becomes n - 1, so a
    prediction every other human agrees with scores 1.
    """
    if not answers:
        raise ValueError("vqa_accuracy needs at least one reference answer")
    pred = clean_whitespace(prediction)
    refs = [clean_whitespace(a) for a in answers]
    if len(refs) == 1:
        return 1.0 if normalize_vqa(pred) == normalize_vqa(refs[0]) else 0.0
    if len(set(refs)) > 1:
        refs = [process_digit_article(process_punctuation(a)) for a in refs]
        pred = process_digit_article(process_punctuation(pred))
    need = float(min(3, len(refs) - 1))
    accs = []
    for i in range(len(refs)):
        matching = sum(1 for j, ref in enumerate(refs) if j != i and ref == pred)
        accs.append(min(1, float(matching) / need))
    return float(sum(accs)) / len(accs)


def exact_match(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the prediction equals any reference after `normalize_vqa`, else 0.0 (0.0 for no references)."""
    pred = normalize_vqa(prediction)
    return 1.0 if any(normalize_vqa(a) == pred for a in answers) else 0.0


_YES = frozenset({"yes", "yeah", "yep", "yup", "yea", "true", "correct", "affirmative"})
_NO = frozenset({"no", "nope", "nah", "false", "incorrect", "negative"})
_EDGE_PUNCT = " \t\n.,!?;:'\"()[]"
_LEAD_WORD = re.compile(r"^\s*([A-Za-z]+)\s*[,.!;:]")


def canonical_yes_no(answer: str) -> str:
    """"Yes." / "yeah" / "True" / "Yes, it is." → "yes"; "No," / "nope" → "no"; anything else unchanged.

    Models answer yes/no questions with varied words and punctuation; VQA references are the bare
    words. A leading yes/no word counts only when punctuation follows it ("No smoking" stays as is).
    """
    whole = answer.strip(_EDGE_PUNCT).lower()
    lead = _LEAD_WORD.match(answer)
    for word in (whole, lead.group(1).lower() if lead else None):
        if word in _YES:
            return "yes"
        if word in _NO:
            return "no"
    return answer


LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Tried in order; the first letter found that is a valid choice wins.
_CHOICE_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^\s*\(?([A-Za-z])\)?\s*[.:)]?\s*$"),  # "B", "b", "(B)", "B.", "B)"
    re.compile(r"^\s*\(([A-Za-z])\)"),  # "(B) cat"
    re.compile(r"^\s*([A-Z])\s*[.:)]\s"),  # "B. cat", "B) cat", "B: cat"
    re.compile(r"(?i:\b(?:answer|option|choice)\b(?:\s+(?:is|would\s+be))?)\s*[:\-]?\s*\(?([A-Z])(?![A-Za-z])"),
    re.compile(r"(?i:\b(?:answer|option|choice)\b(?:\s+(?:is|would\s+be))?)\s*[:\-]?\s*\(?([a-z])\)?[\s.!]*$"),
    re.compile(r"\(([A-Z])\)"),  # "... (C) ..."
)


def extract_choice_letter(answer: str, n_choices: int | None = None) -> str | None:
    """The option letter a model chose ("(B) cat" → "B", "The answer is C" → "C", "b" → "B"), or None.

    Lowercase letters count only where they cannot be an English word ("a cat" is not option A).
    With `n_choices`, letters beyond the options (E for 4 choices) are ignored.
    """
    valid = LETTERS[:n_choices] if n_choices is not None else LETTERS
    for pattern in _CHOICE_PATTERNS:
        for match in pattern.finditer(answer):
            letter = match.group(1).upper()
            if letter in valid:
                return letter
    return None
