"""`lmms_eval` export: a dataset's test split as an lmms-eval task, loadable offline from disk.

    vlmdata export out/vqa --format lmms_eval -o tasks/vqa
    lmms-eval --model llava_hf --model_args pretrained=... --include_path tasks/vqa --tasks vlmdata_vqa

Writes `DEST/<name>.yaml` (the task), `DEST/vlmdata_task_utils.py` (doc_to_visual, doc_to_text,
process_results) and `DEST/dataset/` (a `DatasetDict` with a `test` split, read with lmms-eval's
`dataset_kwargs: {load_from_disk: true}`, so nothing is downloaded). Each doc is one single-turn
question with its reference answers; rows that are not (multi-turn, no answers) are left out and
counted in `DEST/export_rejects.jsonl`.

The metric is `vqa_accuracy`: the official VQA accuracy from `vlmdata.answers` (min(#matching humans/3,
1), leave-one-out averaged), the same number `vlmtrain eval` reports. lmms-eval's built-in
`exact_match` metric (used by a task without its own process_results) is string equality with
`doc_to_target`, which is not VQA accuracy; its vqav2 task reports VQA accuracy under the name
`exact_match` through its own process_results. The task file needs `vlmdata` importable where
lmms-eval runs (`pip install vlmdata`), so the metric has one implementation.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from vlmdata.output.arrow_io import splits
from vlmdata.output.export.rows import iter_export_rows

UTILS = '''"""Written by vlmdata (export --format lmms_eval): the task's doc functions; the metric is vlmdata's."""

from vlmdata.answers import vqa_accuracy


def doc_to_visual(doc):
    return [im.convert("RGB") for im in doc["images"]]


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    kw = lmms_eval_specific_kwargs or {}
    return f"{kw.get('pre_prompt', '')}{doc['question']}{kw.get('post_prompt', '')}"


def process_results(doc, results):
    return {"vqa_accuracy": vqa_accuracy(results[0], doc["answers"])}
'''


class _Function(str):
    """A value lmms-eval's YAML loader imports (`!function module.name`, relative to the task file)."""


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(_Function, lambda dumper, value: dumper.represent_scalar("!function", str(value)))


def _doc(row: dict[str, Any]) -> dict[str, Any] | str:
    """The lmms-eval doc of one row, or why it cannot be one."""
    turns = [m for m in row["messages"] if m["role"] != "system"]
    if [m["role"] for m in turns] != ["user", "assistant"]:
        return "not_single_turn"
    if not row["answers"]:
        return "no_answers"
    question = "\n".join(p["text"] for p in turns[0]["content"] if p["type"] == "text" and p.get("text"))
    counts = Counter(row["answers"])
    answer = next(a for a in row["answers"] if counts[a] == max(counts.values()))
    return {"id": row["id"], "task": row["task"], "question": question, "answer": answer,
            "answers": list(row["answers"]), "images": [{"bytes": im["bytes"], "path": None} for im in row["images"]]}


def export_lmms_eval(out_dir: Path, *, dest: Path, name: str, final_dest: Path | None = None) -> dict[str, Path]:
    """Write the task for the `test` split (else `validation`); returns {split: task yaml}."""
    import datasets

    if (dest / "dataset").exists():
        raise ValueError(f"{dest / 'dataset'} exists; export the task into an empty folder (-o DEST)")
    available = splits(out_dir)
    split = next((s for s in ("test", "validation") if s in available), None)
    if split is None:
        raise ValueError(f"{out_dir} has no test or validation split (splits: {', '.join(available)}); "
                         "add split: {test: 0.05} to the recipe")
    docs, skipped = [], Counter()
    with (dest / "export_rejects.jsonl").open("w", encoding="utf-8") as rejects:
        for s, row in iter_export_rows(out_dir):
            if s != split:
                continue
            doc = _doc(row)
            if isinstance(doc, str):
                skipped[doc] += 1
                rejects.write(json.dumps({"stage": "export:lmms_eval", "split": s, "id": row["id"], "reason": doc})
                              + "\n")
                continue
            docs.append(doc)
    if not docs:
        raise ValueError(f"no row of split '{split}' is a single-turn question with answers ({dict(skipped)})")
    features = datasets.Features({"id": datasets.Value("string"), "task": datasets.Value("string"),
                                  "question": datasets.Value("string"), "answer": datasets.Value("string"),
                                  "answers": [datasets.Value("string")], "images": [datasets.Image()]})
    table = {k: [d[k] for d in docs] for k in features}
    datasets.DatasetDict({"test": datasets.Dataset.from_dict(table, features=features)}).save_to_disk(
        str(dest / "dataset"))
    (dest / "vlmdata_task_utils.py").write_text(UTILS, encoding="utf-8")
    task = f"vlmdata_{name}".replace("-", "_")
    config = {
        "task": task,
        "dataset_path": str(((final_dest or dest) / "dataset").resolve()),
        "dataset_kwargs": {"load_from_disk": True},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_visual": _Function("vlmdata_task_utils.doc_to_visual"),
        "doc_to_text": _Function("vlmdata_task_utils.doc_to_text"),
        "doc_to_target": "answer",
        "generation_kwargs": {"max_new_tokens": 16, "temperature": 0, "do_sample": False},
        "process_results": _Function("vlmdata_task_utils.process_results"),
        "metric_list": [{"metric": "vqa_accuracy", "aggregation": "mean", "higher_is_better": True}],
        "metadata": [{"version": 0.0, "source": "vlmdata", "split": split, "rows": len(docs),
                      "left_out": dict(skipped)}],
    }
    text = yaml.dump(config, Dumper=_Dumper, sort_keys=False)
    path = dest / f"{task}.yaml"
    path.write_text(f"# lmms-eval --include_path {final_dest or dest} --tasks {task} (written by vlmdata)\n" + text,
                    encoding="utf-8")
    return {split: path}
