"""A straight Python 3 transcription of the official VQA evaluator, for tests only.

Source: github.com/GT-Vision-Lab/VQA, PythonEvaluationTools/vqaEvaluation/vqaEval.py (commit a013f00),
`VQAEval.evaluate`, `processPunctuation` and `processDigitArticle`, line by line with their quirks
(dict-inequality leave-one-out, `re.UNICODE` passed as `re.sub`'s count, `manualMap.setdefault`),
reading the official questions/annotations/results JSON files themselves. It shares no code with
`vlmdata.answers`, so a test comparing the two compares two independent implementations.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

CONTRACTIONS = {
    'aint': "ain't", 'arent': "aren't", 'cant': "can't", 'couldve': "could've", 'couldnt': "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", 'didnt': "didn't", 'doesnt': "doesn't",
    'dont': "don't", 'hadnt': "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", 'hasnt': "hasn't",
    'havent': "haven't", 'hed': "he'd", "hed've": "he'd've", "he'dve": "he'd've", 'hes': "he's",
    'howd': "how'd", 'howll': "how'll", 'hows': "how's", "Id've": "I'd've", "I'dve": "I'd've", 'Im': "I'm",
    'Ive': "I've", 'isnt': "isn't", 'itd': "it'd", "itd've": "it'd've", "it'dve": "it'd've", 'itll': "it'll",
    "let's": "let's", 'maam': "ma'am", 'mightnt': "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", 'mightve': "might've", 'mustnt': "mustn't", 'mustve': "must've",
    'neednt': "needn't", 'notve': "not've", 'oclock': "o'clock", 'oughtnt': "oughtn't", "ow's'at": "'ow's'at",
    "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", 'shant': "shan't", "shed've": "she'd've",
    "she'dve": "she'd've", "she's": "she's", 'shouldve': "should've", 'shouldnt': "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": 'somebodyd',
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've", 'somebodyll': "somebody'll",
    'somebodys': "somebody's", 'someoned': "someone'd", "someoned've": "someone'd've",
    "someone'dve": "someone'd've", 'someonell': "someone'll", 'someones': "someone's",
    'somethingd': "something'd", "somethingd've": "something'd've", "something'dve": "something'd've",
    'somethingll': "something'll", 'thats': "that's", 'thered': "there'd", "thered've": "there'd've",
    "there'dve": "there'd've", 'therere': "there're", 'theres': "there's", 'theyd': "they'd",
    "theyd've": "they'd've", "they'dve": "they'd've", 'theyll': "they'll", 'theyre': "they're",
    'theyve': "they've", 'twas': "'twas", 'wasnt': "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    'weve': "we've", 'werent': "weren't", 'whatll': "what'll", 'whatre': "what're", 'whats': "what's",
    'whatve': "what've", 'whens': "when's", 'whered': "where'd", 'wheres': "where's", 'whereve': "where've",
    'whod': "who'd", "whod've": "who'd've", "who'dve": "who'd've", 'wholl': "who'll", 'whos': "who's",
    'whove': "who've", 'whyll': "why'll", 'whyre': "why're", 'whys': "why's", 'wont': "won't",
    'wouldve': "would've", 'wouldnt': "wouldn't", "wouldnt've": "wouldn't've", "wouldn'tve": "wouldn't've",
    'yall': "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll", "yall'd've": "y'all'd've",
    "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", 'youd': "you'd", "youd've": "you'd've",
    "you'dve": "you'd've", 'youll': "you'll", 'youre': "you're", 'youve': "you've",
}
MANUAL_MAP = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
              "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
ARTICLES = ["a", "an", "the"]
PERIOD_STRIP = re.compile(r"(?!<=\d)(\.)(?!\d)")
COMMA_STRIP = re.compile(r"(\d)(\,)(\d)")
PUNCT = [";", r"/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]


def process_punctuation(in_text: str) -> str:
    out_text = in_text
    for p in PUNCT:
        if (p + " " in in_text or " " + p in in_text) or (re.search(COMMA_STRIP, in_text) is not None):
            out_text = out_text.replace(p, "")
        else:
            out_text = out_text.replace(p, " ")
    out_text = PERIOD_STRIP.sub("", out_text, re.UNICODE)  # noqa: B034 - the official quirk: count=32
    return out_text


def process_digit_article(in_text: str) -> str:
    out_text = []
    temp_text = in_text.lower().split()
    for word in temp_text:
        word = MANUAL_MAP.setdefault(word, word)
        if word not in ARTICLES:
            out_text.append(word)
    for word_id, word in enumerate(out_text):
        if word in CONTRACTIONS:
            out_text[word_id] = CONTRACTIONS[word]
    return " ".join(out_text)


def official_scores(*, annotations: Path, results: Path) -> dict[int, float]:
    """{question_id: accuracy in [0, 1]} as `VQAEval.evaluate` computes it (before its rounding to 2 places)."""
    gts = {a["question_id"]: a for a in json.loads(annotations.read_text(encoding="utf-8"))["annotations"]}
    res = {r["question_id"]: r for r in json.loads(results.read_text(encoding="utf-8"))}
    acc_qa = {}
    for ques_id in res:
        for ans_dic in gts[ques_id]["answers"]:
            ans_dic["answer"] = ans_dic["answer"].replace("\n", " ")
            ans_dic["answer"] = ans_dic["answer"].replace("\t", " ")
            ans_dic["answer"] = ans_dic["answer"].strip()
        res_ans = res[ques_id]["answer"]
        res_ans = res_ans.replace("\n", " ")
        res_ans = res_ans.replace("\t", " ")
        res_ans = res_ans.strip()
        gt_acc = []
        gt_answers = [ans["answer"] for ans in gts[ques_id]["answers"]]
        if len(set(gt_answers)) > 1:
            for ans_dic in gts[ques_id]["answers"]:
                ans_dic["answer"] = process_punctuation(ans_dic["answer"])
                ans_dic["answer"] = process_digit_article(ans_dic["answer"])
            res_ans = process_punctuation(res_ans)
            res_ans = process_digit_article(res_ans)
        for gt_ans_datum in gts[ques_id]["answers"]:
            other_gt_ans = [item for item in gts[ques_id]["answers"] if item != gt_ans_datum]
            matching_ans = [item for item in other_gt_ans if item["answer"] == res_ans]
            acc = min(1, float(len(matching_ans)) / 3)
            gt_acc.append(acc)
        acc_qa[ques_id] = float(sum(gt_acc)) / len(gt_acc)
    return acc_qa
