"""The lmms-eval export, checked against lmms-eval's documented task schema (lmms-eval itself pulls torch,
wandb, opencv and a CUDA stack, too heavy for this CI): its TaskConfig keys, `!function` imports relative
to the task file, `dataset_kwargs: {load_from_disk: true}`, and the VQA accuracy its process_results gives."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import yaml
from click.testing import CliRunner
from vlmdata_kit import Workspace

from vlmdata.answers import vqa_accuracy
from vlmdata.cli import main

# lmms-eval 0.7.3, lmms_eval/api/task.py: the fields of TaskConfig (a key outside them is an error there).
TASK_CONFIG_FIELDS = set(
    ["task", "task_alias", "tag", "group", "group_alias", "dataset_path", "dataset_name", "dataset_kwargs", "training_split", "validation_split", "test_split", "fewshot_split", "full_docs", "process_results_use_image", "process_docs", "doc_to_visual", "doc_to_text", "doc_to_target", "doc_to_choice", "doc_to_messages", "process_results", "use_prompt", "description", "target_delimiter", "fewshot_delimiter", "fewshot_config", "num_fewshot", "metric_list", "output_type", "generation_kwargs", "repeats", "filter_list", "should_decontaminate", "doc_to_decontamination_query", "metadata", "lmms_eval_specific_kwargs", "model_specific_generation_kwargs", "model_specific_target_kwargs"])
TEN = ["2", "2", "two", "3", "3", "3", "3", "3", "3", "3"]


def _load_task(path: Path) -> dict:
    """lmms-eval's rule: `!function mod.fn` imports fn from mod.py beside the task file."""

    class Loader(yaml.SafeLoader):
        pass

    def function(loader: yaml.SafeLoader, node: yaml.Node):
        module, fn = loader.construct_scalar(node).rsplit(".", 1)
        spec = importlib.util.spec_from_file_location(module, os.path.join(path.parent, f"{module}.py"))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return getattr(mod, fn)

    Loader.add_constructor("!function", function)
    return yaml.load(path.read_text(), Loader=Loader)  # noqa: S506 - our own loader class


def test_lmms_eval_task_loads_offline_and_scores_vqa_accuracy(ws: Workspace) -> None:
    import datasets

    rows = []
    for i in range(12):
        ws.image(f"imgs/{i}.png", seed=i)
        rows.append({"image": f"{i}.png", "question": f"How many blocks in {i}?", "answers": TEN})
    rows.append({"image": "0.png", "question": "What colour?", "answers": ["red"]})
    ws.jsonl("imgs/qa.jsonl", rows)
    built = ws.build({"name": "counting-vqa", "sources": [{"name": "qa", "kind": "jsonl", "path": "imgs/qa.jsonl"}],
                      "instruct": {"vqa": {"suffix": "Answer the question using a single word or phrase."}},
                      "split": {"validation": 0.0, "test": 0.5, "group_by": "id"}})
    dest = ws.path("tasks/vqa")
    res = CliRunner().invoke(main, ["export", str(built.path), "--format", "lmms_eval", "-o", str(dest)])
    assert res.exit_code == 0, res.output
    task_file = dest / "vlmdata_counting_vqa.yaml"
    config = _load_task(task_file)
    assert set(config) <= TASK_CONFIG_FIELDS
    assert config["task"] == "vlmdata_counting_vqa" and config["test_split"] == "test"
    assert config["dataset_kwargs"] == {"load_from_disk": True} and config["output_type"] == "generate_until"
    assert config["metric_list"] == [{"metric": "vqa_accuracy", "aggregation": "mean", "higher_is_better": True}]
    docs = datasets.load_from_disk(config["dataset_path"])["test"]
    test_ids = {r["id"] for r in built.split_rows("test")}
    assert set(docs["id"]) == test_ids and len(docs) > 0
    for doc in docs:
        (im,) = config["doc_to_visual"](doc)
        assert im.mode == "RGB" and im.size == (32, 24)
        text = config["doc_to_text"](doc, {"pre_prompt": "", "post_prompt": ""})
        assert text.endswith("Answer the question using a single word or phrase.") and "<image>" not in text
        target = doc[config["doc_to_target"]]
        assert target in doc["answers"]
        got = config["process_results"](doc, ["2"])["vqa_accuracy"]
        assert got == vqa_accuracy("2", doc["answers"])
        if doc["answers"] == TEN:
            # "two" normalises to "2": 3 of 10 humans, leave-one-out mean (3 x 2/3 + 7 x 1) / 10, not 0 or 1
            assert abs(got - 0.9) < 1e-9
            assert config["process_results"](doc, ["3"])["vqa_accuracy"] == 1.0
            assert target == "3"  # string exact match with doc_to_target would give 0 for "2"


def test_lmms_eval_export_needs_an_eval_split(ws: Workspace) -> None:
    ws.image("a.png", seed=1)
    ws.jsonl("qa.jsonl", [{"image": "a.png", "question": "q?", "answers": ["a"]}])
    built = ws.build({"name": "t", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl"}],
                      "split": {"validation": 0.0}})
    res = CliRunner().invoke(main, ["export", str(built.path), "--format", "lmms_eval", "-o", str(ws.path("x"))])
    assert res.exit_code == 2 and "no test or validation split" in res.output and "Traceback" not in res.output
