"""VQA accuracy equals the official evaluator, end to end: official questions + annotations JSON →
`vlmdata build` (with `normalize: {answers: vqa}`, which rewrites `answers`) → vlmtrain scoring →
per-question scores compared with `vqa_official`, a straight transcription of vqaEval.py that reads
the same official files.

Two paths: `vlmtrain score` with an official results file (answers we choose, so every quirk of the
script is hit), and `vlmtrain eval` with a tiny model trained to answer "two" (real generation).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from vqa_official import official_scores

# (answers of the 10 humans, the prediction to score); each line hits one rule of the official script
CASES: list[tuple[list[str], str]] = [
    (["two"] * 6 + ["2"] * 4, "two"),  # normalised refs all "2": scored against them "two" would get 0
    (["two"] * 6 + ["2"] * 4, "2"),
    (["T-shirt"] * 4 + ["t-shirt"] * 3 + ["tshirt", "t shirt", "shirt"], "t-shirt"),
    (["yes"] * 10, "Yes"),  # identical refs: nothing is normalised, so "Yes" scores 0
    (["yes"] * 10, "yes"),
    (["dog."] * 10, "dog"),
    (["a dog", "the dog", "dog", "Dog", "dogs", "DOG", "dog ", "an dog", "doggy", "puppy"], "dogs"),
    (["1,000", "1000", "1,000", "one thousand", "1000.", "1 000", "1,000", "1000", "thousand", "1,000"], "1,000"),
    (["dont know", "don't know", "dont know", "no idea", "dont", "don't", "dunno", "dont know", "?", "idk"],
     "dont know"),
    (["hot-dog", "hot dog", "hotdog", "hot-dog", "hot dog", "hot - dog", "sausage", "hot dog", "hot dog", "x"],
     "hot-dog"),
    (["red\n", "red", "red\t", " red ", "Red", "red.", "red!", "dark red", "red", "red"], "red\n"),
    (["3:00", "3 00", "3:00", "three", "3", "3:00 pm", "3:00", "(3)", "[3]", "3"], "3:00"),
    (["left", "right", "left", "left", "right", "left", "center", "left", "right", "left"], "Left."),
    (["Im", "I'm", "im", "Im", "I'm", "Ive", "Ive", "i've", "Im", "x"], "Im"),
]
WORDS = ["two", "2", "Two", "yes", "no", "Yes.", "red", "the red", "t-shirt", "T-Shirt", "tshirt", "1,000",
         "1000", "dont", "don't", "a cat", "cat", "cats", "hot dog", "hot-dog", "3:00", "n/a", "none", "0",
         "it's", "its", "10", "ten", "left.", "left", "a", "(b)", "b", "@home", "home"]


def random_cases(n: int, *, seed: int) -> list[tuple[list[str], str]]:
    """Answer sets drawn from a few confusable words (so normalisation decides), predictions likewise."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        pool = rng.sample(WORDS, rng.randint(1, 4))
        out.append(([rng.choice(pool) for _ in range(10)], rng.choice(pool + [rng.choice(WORDS)])))
    return out


def official_files(root: Path, answer_sets: list[list[str]], *, target: str | None = None) -> None:
    """VQAv2-format questions + annotations (question ids 1000, 1001, ...) on one COCO-named picture."""
    from PIL import Image

    (root / "val2014").mkdir(parents=True)
    Image.new("RGB", (32, 32), (200, 40, 40)).save(root / "val2014" / "COCO_val2014_000000000001.jpg")
    questions, annotations = [], []
    for i, answers in enumerate(answer_sets):
        qid = 1000 + i
        questions.append({"image_id": 1, "question": f"Question number {i}?", "question_id": qid})
        annotations.append({
            "question_id": qid, "image_id": 1, "question_type": "what", "answer_type": "other",
            "multiple_choice_answer": target or max(answers, key=answers.count),
            "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1} for j, a in enumerate(answers)],
        })
    (root / "questions.json").write_text(json.dumps({"data_subtype": "val2014", "questions": questions}))
    (root / "annotations.json").write_text(json.dumps({"annotations": annotations}))


def build_dataset(root: Path) -> Path:
    from vlmdata.cli import main as vlmdata_main

    recipe = {"name": "vqa", "seed": 0,
              "sources": [{"name": "vqav2", "kind": "vqav2", "questions": "questions.json",
                           "annotations": "annotations.json", "image_root": "val2014"}],
              "instruct": {"vqa": {"suffix": "Answer the question using a single word or phrase."}},
              "normalize": {"answers": "vqa"}, "output": {"report": False}}
    (root / "recipe.yaml").write_text(yaml.safe_dump(recipe, sort_keys=False))
    result = CliRunner().invoke(vlmdata_main, ["build", str(root / "recipe.yaml"), "-o", str(root / "out")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return root / "out"


def scored(out: Path) -> dict[int, dict[str, Any]]:
    return {p["question_id"]: p for p in map(json.loads, (out / "predictions.jsonl").read_text().splitlines())}


def test_score_command_equals_the_official_script(tmp_path: Path) -> None:
    from vlmtrain.cli import main

    cases = CASES + random_cases(300, seed=7)
    official_files(tmp_path, [answers for answers, _ in cases])
    data = build_dataset(tmp_path)
    import datasets

    rows = datasets.load_from_disk(str(data))["train"]
    assert len(rows) == len(cases)
    assert rows[0]["answers"] == ["2"] * 10  # the normalize step did rewrite the references
    results = [{"question_id": 1000 + i, "answer": pred} for i, (_, pred) in enumerate(cases)]
    (tmp_path / "results.json").write_text(json.dumps(results))

    result = CliRunner().invoke(main, ["score", "--data", f"{data}:train", "--predictions",
                                       str(tmp_path / "results.json"), "--out", str(tmp_path / "scores")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    want = official_scores(annotations=tmp_path / "annotations.json", results=tmp_path / "results.json")
    got = scored(tmp_path / "scores")
    assert {qid: p["scores"]["vqa_accuracy"] for qid, p in got.items()} == want  # bit for bit, every question
    assert got[1000]["scores"]["vqa_accuracy"] == 1.0 and got[1003]["scores"]["vqa_accuracy"] == 0.0
    assert got[1002]["answers"] == cases[2][0]  # scored against what the humans typed
    metrics = json.loads((tmp_path / "scores" / "metrics.json").read_text())
    assert metrics["overall"]["vqa_accuracy"] == pytest.approx(sum(want.values()) / len(want), abs=1e-12)
    assert 0.1 < metrics["overall"]["vqa_accuracy"] < 0.9  # the random cases are neither all right nor all wrong

    # our own predictions.jsonl (keyed by row id) scores the same when fed back
    again = CliRunner().invoke(main, ["score", "--data", f"{data}:train", "--predictions",
                                      str(tmp_path / "scores" / "predictions.jsonl"), "--out", str(tmp_path / "again")])
    assert again.exit_code == 0, again.output
    assert scored(tmp_path / "again") == got


def test_score_command_refuses_partial_or_foreign_predictions(tmp_path: Path) -> None:
    from vlmtrain.cli import main

    official_files(tmp_path, [["cat"] * 10, ["dog"] * 10])
    data = build_dataset(tmp_path)
    cases = {
        "partial.json": ([{"question_id": 1000, "answer": "cat"}], "1 row(s) have no answer"),
        "foreign.json": ([{"question_id": 1000, "answer": "cat"}, {"question_id": 1001, "answer": "x"},
                          {"question_id": 7, "answer": "x"}], "1 answer(s) in"),
        "shape.json": ([{"qid": 1000, "text": "cat"}], "entry 1 is not"),
        "twice.json": ([{"question_id": 1000, "answer": "cat"}] * 2, "answered twice"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(json.dumps(content))
        result = CliRunner().invoke(main, ["score", "--data", f"{data}:train", "--predictions", str(tmp_path / name),
                                           "--out", str(tmp_path / "s")])
        assert result.exit_code == 2, (name, result.output)
        assert result.exception is None or isinstance(result.exception, SystemExit)
        assert "--predictions" in result.output and message in result.output, (name, result.output)
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_eval_of_a_trained_model_equals_the_official_script(tmp_path: Path, tiny_llava: Path) -> None:
    """Real generation: a tiny LLaVA trained until it answers every question "two", then `vlmtrain eval`."""
    from vlmtrain.cli import main

    answer_sets = [["two"] * 6 + ["2"] * 4, ["two"] * 10, ["two"] * 4 + ["Two"] * 3 + ["three"] * 3,
                   ["two"] * 5 + ["2 dogs", "two.", "2", "3", "4"], ["two"] * 4 + ["three"] * 3 + ["2"] * 3]
    official_files(tmp_path, answer_sets, target="two")
    data = build_dataset(tmp_path)
    config = tmp_path / "train.yaml"
    config.write_text(
        f"name: two\nseed: 0\nmodel: {{path: {tiny_llava}}}\ndata: {{path: {data}, split: train, max_length: 96}}\n"
        "lora: {r: 8, alpha: 16, dropout: 0.0}\n"
        "train: {steps: 16, batch_size: 5, lr: 2.0e-2, warmup_steps: 1, scheduler: constant_with_warmup, device: cpu}\n"
        f"output: {{dir: {tmp_path / 'run'}}}\n")
    trained = CliRunner().invoke(main, ["run", str(config)])
    assert trained.exit_code == 0, trained.output + repr(trained.exception)
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "run"), "--data", f"{data}:train", "--max-new-tokens",
                                       "3", "--out", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output + repr(result.exception)
    got = scored(tmp_path / "eval")
    results = [{"question_id": qid, "answer": p["prediction"]} for qid, p in got.items()]
    (tmp_path / "results.json").write_text(json.dumps(results))
    want = official_scores(annotations=tmp_path / "annotations.json", results=tmp_path / "results.json")
    assert {qid: p["scores"]["vqa_accuracy"] for qid, p in got.items()} == want
    assert [p["prediction"] for p in got.values()] == ["two"] * len(answer_sets)  # the model says its target
    assert got[1000]["scores"]["vqa_accuracy"] == 1.0  # (0.0 when scored against the rewritten references)
