"""The bad-input corpus: every class of input that used to kill a build (or change a label silently) becomes
a reject with its reason, the good rows come through intact (`datasets.load_from_disk` counts), and the CLI
exits 0. Built with the local engine and 2 workers here; test_bad_inputs_ray.py builds the same corpus on
Ray. Then: what a build may replace (never a user's folder), the reject budget, SIGKILL/SIGTERM with
workers, 16-bit greyscale, DICOM max_pixels from the header, NaN labels and duplicate ids."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import datasets
import pytest
from click.testing import CliRunner
from vlmdata_kit import Built, Workspace, encode, picture

from vlmdata.cli import main

HERE = Path(__file__).parent
ROOT = HERE.parents[1]

# reason -> rejects planted in the corpus (one build, every source kind that reads text)
EXPECTED_REJECTS = {
    "bad_encoding": 3,       # invalid UTF-8 in a JSONL line, a CSV cell, a JSON array item
    "bad_path": 2,           # a NUL byte in a path, a path longer than the OS allows
    "missing_answer": 3,     # NaN answers in JSONL, CSV and Parquet are missing values, not "nan"
    "too_many_choices": 1,   # 27 multiple-choice options
    "internal_error": 1,     # a user filter raising ZeroDivisionError on one row
    "malformed_line": 2,     # a CSV cell over the csv module's field limit, a broken labels line
    "bad_conversation": 1,   # LLaVA conversations that hold strings
    "missing_label": 1,      # the image whose labels line was broken
    "template_error": 6,     # 1/0, str + int, include without loader, range(10**9), 'x' * 10**10, nested loops
}
GOOD_ROWS = 13


def _corpus(ws: Workspace) -> Path:
    for i in range(12):
        ws.image(f"imgs/{i}.png", seed=i)
    data_url = "data:image/png;base64," + base64.b64encode(encode(picture(40), "PNG")).decode()
    many = [f"option {k}" for k in range(27)]
    good = lambda i, q: json.dumps({"image": f"{i}.png", "question": q, "answers": [f"answer {i}"]})  # noqa: E731
    lines = [
        good(0, "What is in picture zero?"),
        good(1, "What is in picture one?"),
        json.dumps({"image": data_url, "question": "What does the inline picture show?", "answers": ["a grid"]}),
        good(2, "Invalid byte here: XX?"),
        json.dumps({"image": "2\u0000.png", "question": "NUL?", "answers": ["x"]}),
        json.dumps({"image": "a" * 300 + ".png", "question": "Long?", "answers": ["x"]}),
        '{"image": "3.png", "question": "Is the answer NaN?", "answer": NaN}',
        json.dumps({"image": "4.png", "question": "Which option?", "choices": many, "answer": "option 3"}),
        json.dumps({"image": "5.png", "question": "Which colour?", "choices": ["red", "green", "blue"],
                    "answer": "green"}),
        json.dumps({"image": "6.png", "question": "Does this go boom?", "answers": ["yes"]}),
        '{"image": "7.png", "question": "Which animal?", "answers": [NaN, "cat"]}',
    ]
    raw = "\n".join(lines).encode()
    raw = raw.replace(b"XX", b"\xe9\xff")  # bytes that are not UTF-8
    ws.write("qa.jsonl", raw + b"\n")

    csv_rows = ["image,question,answer", "8.png,What is in eight?,eight", "9.png,What is in nine?,nine",
                "10.png,Bad byte?,caf\udce9", "11.png,Huge cell?," + "x" * 200_000, "0.png,NaN answer?,NaN"]
    ws.write("tab.csv", "\n".join(csv_rows).encode("utf-8", "surrogateescape") + b"\n")

    items = [{"image": "1.png", "question": "Array item one?", "answers": ["one"]},
             {"image": "2.png", "question": "Array item BADBYTE?", "answers": ["two"]}]
    ws.write("arr.json", json.dumps(items).encode().replace(b"BADBYTE", b"\xc3\x28"))

    ws.write("conv.json", json.dumps([
        {"id": "ok", "image": "3.png", "conversations": [{"from": "human", "value": "<image>\nDescribe it."},
                                                         {"from": "gpt", "value": "Blocks of grey."}]},
        {"id": "strings", "image": "4.png", "conversations": ["Describe it.", "Blocks of grey."]}]))

    for name, seed in (("a.png", 20), ("b.png", 21), ("c.png", 22)):
        ws.image(f"pics/{name}", seed=seed)
    ws.write("pics_labels.jsonl", '{"file_name": "a.png", "caption": "Picture a."}\n'
                                  '{"file_name": "c.png", "caption": "broken\n'
                                  '{"file_name": "b.png", "caption": "Picture b."}\n')

    ws.write("t.j2", "{% block user %}{% if kind == 'div' %}{{ 1 / n }}{% elif kind == 'add' %}{{ 'a' + n }}"
                     "{% elif kind == 'inc' %}{% include 'other.j2' %}{% elif kind == 'range' %}"
                     "{% for i in range(n) %}.{% endfor %}{% elif kind == 'rep' %}{{ 'x' * n }}"
                     "{% elif kind == 'nest' %}{% for i in range(n) %}{% for j in range(n) %}{% endfor %}{% endfor %}"
                     "{% else %}Describe the picture {{ n }}.{% endif %}{% endblock %}\n"
                     "{% block assistant %}A picture.{% endblock %}\n")
    ws.jsonl("templ.jsonl", [{"image": f"{i}.png", "kind": kind, "n": n} for i, (kind, n) in enumerate(
        [("div", 0), ("add", 1), ("inc", 0), ("range", 10**9), ("rep", 10**10), ("nest", 100_000), ("ok", 7)])])

    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"image": ["5.png", "6.png"], "question": ["Parquet good?", "Parquet NaN?"],
                             "answer": [1.5, float("nan")]}), ws.path("p.parquet"))

    return ws.recipe({
        "name": "corpus", "batch_size": 3,
        "sources": [
            {"name": "qa", "kind": "jsonl", "path": "qa.jsonl", "image_root": "imgs"},
            {"name": "tab", "kind": "csv", "path": "tab.csv", "image_root": "imgs"},
            {"name": "arr", "kind": "json", "path": "arr.json", "image_root": "imgs"},
            {"name": "conv", "kind": "llava", "path": "conv.json", "image_root": "imgs"},
            {"name": "pics", "kind": "imagefolder", "path": "pics", "labels": "pics_labels.jsonl"},
            {"name": "templ", "kind": "jsonl", "path": "templ.jsonl", "image_root": "imgs", "task": "templ"},
            {"name": "pq", "kind": "parquet", "path": "p.parquet", "image_root": "imgs"},
        ],
        "instruct": {"templ": {"template": "t.j2"}},
        "filter": [{"custom": {"cls": "bad_steps:Boom"}}],
    })


def check_corpus(built: Built) -> None:
    """The assertions every engine's build of the corpus must pass."""
    assert built.manifest["rejects"] == EXPECTED_REJECTS
    assert built.manifest["rows"] == GOOD_ROWS
    dd = datasets.load_from_disk(str(built.path))
    assert len(dd["train"]) == GOOD_ROWS
    rows = built.rows
    questions = {r["messages"][0]["content"][-1]["text"].split("\n")[0] for r in rows}
    assert {"What is in picture zero?", "What does the inline picture show?", "Which colour?", "Array item one?",
            "What is in eight?", "Parquet good?"} <= questions
    assert all("nan" not in (a.lower() for a in r["answers"]) for r in rows)  # NaN is never an answer
    animal = next(r for r in rows if "Which animal?" in json.dumps(r["messages"]))
    assert animal["answers"] == ["cat"]
    by_reason = {r["reason"]: r for r in built.rejects}
    boom = by_reason["internal_error"]
    assert boom["stage"] == "filter.boom" and "ZeroDivisionError" in boom["detail"] and boom["source"] == "qa"
    assert by_reason["too_many_choices"]["locator"] == "qa.jsonl:8"
    encodings = sorted(r["locator"] for r in built.rejects if r["reason"] == "bad_encoding")
    assert encodings == ["arr.json[1]", "qa.jsonl:4", "tab.csv:4"]
    assert {r["locator"] for r in built.rejects if r["reason"] == "malformed_line"} == {"tab.csv:5",
                                                                                       "pics_labels.jsonl:2"}
    templates = [r["detail"] for r in built.rejects if r["reason"] == "template_error"]
    for needle in ("ZeroDivisionError", "TypeError", "no loader", "Range too big", "SecurityError", "loops ran more"):
        assert any(needle in d for d in templates), (needle, templates)
    # the good pictures keep their bytes: the inline data: URL image decodes to its picture
    inline = next(r for r in rows if "inline picture" in json.dumps(r["messages"]))
    assert built.image(inline).size == picture(40).size


@pytest.fixture(scope="module")
def corpus(module_ws: Workspace) -> Path:
    return _corpus(module_ws)


def test_corpus_with_two_local_workers(module_ws: Workspace, corpus: Path) -> None:
    from vlmdata.build import build

    result = build(module_ws.load(corpus), out=module_ws.root / "local2", progress=False, workers=2)
    check_corpus(Built(path=result.path, manifest=result.manifest))


def test_corpus_through_the_cli_exits_0(module_ws: Workspace, corpus: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)])}
    out = module_ws.root / "cli"
    proc = subprocess.run([sys.executable, "-m", "vlmdata.cli", "build", str(corpus), "-o", str(out), "-q",
                           "--workers", "2"], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert f"built {GOOD_ROWS} rows" in proc.stdout and "Traceback" not in proc.stderr
    check_corpus(Built(path=out, manifest=json.loads((out / "manifest.json").read_text())))


# --- what a build may replace -------------------------------------------------------------------------


@pytest.fixture
def small(ws: Workspace) -> Path:
    for i in range(3):
        ws.image(f"imgs/{i}.png", seed=i)
    ws.jsonl("qa.jsonl", [{"image": f"{i}.png", "question": f"Q{i}?", "answers": ["a"]} for i in range(3)])
    return ws.recipe({"name": "small", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl",
                                                    "image_root": "imgs"}]})


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def invoke(*args: Any, cwd: Path | None = None) -> tuple[int, str]:
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    finally:
        os.chdir(old)
    return result.exit_code, result.stdout + result.stderr


@pytest.mark.parametrize("target", [".", "", "out", "user"])
def test_build_never_replaces_what_it_did_not_write(ws: Workspace, small: Path, target: str) -> None:
    ws.write("user/notes.txt", "my thesis")
    ws.build(small, out="out/first")  # `out` holds another dataset
    ws.write("out/keep.txt", "mine")
    if target == "":  # output.path: "" is the recipe's own folder
        text = small.read_text() + "output: {path: ''}\n"
        args: list[Any] = ["build", ws.recipe(text, "empty_path.yaml")]
    else:
        args = ["build", small, "-o", target]
    before = snapshot(ws.root)
    code, text = invoke(*args, cwd=ws.root)
    assert code == 2 and "error: output" in text and "Traceback" not in text, text
    assert "-o " in text and "small" in text  # the suggestion names a folder of its own
    assert snapshot(ws.root) == before
    code, text = invoke(*args, "--force", cwd=ws.root)  # --force never widens it to a user's folder
    assert code == 2 and snapshot(ws.root) == before
    code, text = invoke("validate", *args[1:], cwd=ws.root)  # validate reports the same problem
    assert code == 2 and ("not a vlmdata dataset" in text or "holds" in text), text


def test_rebuild_replaces_its_own_dataset_and_force_another_recipes(ws: Workspace, small: Path) -> None:
    first = ws.build(small, out="out/small")
    again = ws.build(small, out="out/small", limit=1)
    assert first.path == again.path and again.manifest["rows"] == 1
    other = ws.recipe(ws.root.joinpath("recipe.yaml").read_text().replace("name: small", "name: other"), "o.yaml")
    code, text = invoke("build", other, "-o", ws.root / "out/small", "-q")
    assert code == 2 and "another recipe" in text and "--force" in text
    code, text = invoke("build", other, "-o", ws.root / "out/small", "-q", "--force")
    assert code == 0, text
    assert json.loads((ws.root / "out/small/manifest.json").read_text())["name"] == "other"


def test_failed_second_rename_puts_the_old_dataset_back(ws: Workspace, small: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from vlmdata.output import atomic_dir

    old = ws.build(small, out="out/small")
    before = snapshot(old.path)
    real = Path.rename

    def rename(self: Path, target: Any) -> Any:
        if ".partial-" in self.name:
            raise OSError(28, "No space left on device")
        return real(self, target)

    monkeypatch.setattr(atomic_dir.Path, "rename", rename)
    with pytest.raises(OSError, match="No space"):
        ws.build(small, out="out/small", overrides=["seed=3"])
    monkeypatch.undo()
    assert snapshot(old.path) == before
    assert [p.name for p in (ws.root / "out").iterdir()] == ["small"]


def test_an_old_dataset_of_a_dead_swap_is_restored_and_leftovers_cleaned(ws: Workspace, small: Path) -> None:
    built = ws.build(small, out="out/small")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    built.path.rename(ws.root / f"out/.small.old-{dead.pid}")  # killed between the two renames
    (ws.root / f"out/.small.partial-{dead.pid}").mkdir()
    from vlmdata.output.atomic_dir import clean_stale

    clean_stale(ws.root / "out/small")
    assert sorted(p.name for p in (ws.root / "out").iterdir()) == ["small"]
    assert json.loads((ws.root / "out/small/manifest.json").read_text())["rows"] == 3


# --- the reject budget ----------------------------------------------------------------------------------


def test_max_reject_ratio_fails_the_build_and_keeps_the_previous_dataset(ws: Workspace, small: Path) -> None:
    ws.build(small, out="out/small")
    before = snapshot(ws.root / "out")
    ws.jsonl("qa.jsonl", [{"image": f"{i}.png", "question": f"Q{i}?", "answers": ["a"]} for i in range(3)]
             + [{"image": "gone.png", "question": "Where?", "answers": ["x"]}] * 3)
    for extra in (["--set", "max_reject_ratio=0.2"], ["--set", "max_reject_ratio.load=0.2"],
                  ["--set", "sources[0].max_reject_ratio=0.2"]):
        code, text = invoke("build", small, "-o", ws.root / "out/small", "-q", *extra)
        assert code == 1 and "max_reject_ratio" in text and "image_missing: 3" in text, text
        assert "Traceback" not in text and snapshot(ws.root / "out") == before
    code, text = invoke("build", small, "-o", ws.root / "out/small", "-q", "--set", "max_reject_ratio.lod=0.2")
    assert code == 2 and "did you mean 'load'" in text
    code, text = invoke("build", small, "-o", ws.root / "out/small", "-q", "--set", "max_reject_ratio=0.6")
    assert code == 0, text


def test_a_failing_endpoint_trips_the_synthesis_budget(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from openai_server import Reply
    from synth_kit import CONV, job, llava_recipe, serve

    gen = serve(monkeypatch)
    server = next(gen)
    try:
        recipe = ws.recipe(llava_recipe(ws, n=10, jobs=[job("conversation", "llava/conversation", max_retries=0)],
                                        max_reject_ratio={"synthesize": 0.5}))
        ok = ws.build(recipe, out="out/llava")
        before = snapshot(ok.path)

        def flaky(text: str, attempt: int) -> Reply:  # 7 of 10 requests fail
            m = re.search(r"picture (\d+)\.", text)
            return Reply(status=503) if m and int(m.group(1)) <= 7 else Reply(text=CONV)

        server.rule = flaky
        from vlmdata.reject_budget import RejectBudgetExceeded

        with pytest.raises(RejectBudgetExceeded, match="stage 'synthesize': 7 of 10"):
            ws.build(ws.recipe(llava_recipe(ws, n=10, jobs=[job("conversation", "llava/conversation",
                                                                 max_retries=0, temperature=0.5)],
                                            max_reject_ratio={"synthesize": 0.5}), "edited.yaml"),
                     out="out/llava")
        assert snapshot(ok.path) == before
    finally:
        gen.close()


# --- kills ----------------------------------------------------------------------------------------------


def _slow_recipe(ws: Workspace) -> Path:
    for i in range(4):
        ws.image(f"imgs/{i}.png", seed=i)
    ws.jsonl("qa.jsonl", [{"image": f"{i % 4}.png", "question": f"Question {i}?", "answers": ["a"]}
                          for i in range(400)])
    return ws.recipe({"name": "slow", "batch_size": 4, "engine": {"kind": "local", "workers": 2},
                      "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl", "image_root": "imgs"}],
                      "filter": [{"custom": {"cls": "bad_steps:Slow", "args": {"seconds": 0.05}}}]})


def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _alive(pids: list[int]) -> list[int]:
    import psutil

    out = []
    for p in pids:
        try:
            if psutil.Process(p).status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_kill_leaves_no_worker_and_no_half_dataset(ws: Workspace, sig: signal.Signals) -> None:
    recipe = _slow_recipe(ws)
    out = ws.root / "out/slow"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT)])}
    cmd = [sys.executable, "-m", "vlmdata.cli", "build", str(recipe), "-o", str(out), "-q"]
    log = ws.path("build.log").open("wb")  # a file, not a pipe: surviving workers would hold a pipe open
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(workers) < 2:
            time.sleep(0.2)
            workers = _children(proc.pid)
        assert len(workers) >= 2, "the build never started its workers"
        time.sleep(0.5)
        assert list((ws.root / "out").glob(".slow.partial-*"))
        proc.send_signal(sig)
        proc.wait(timeout=60)
        assert proc.returncode != 0
        deadline = time.monotonic() + 10
        while _alive(workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _alive(workers) == [], "workers outlived the driver"
    finally:  # a failing run must not leave its workers behind either
        for pid in _alive(workers):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
        log.close()
    err = ws.path("build.log").read_bytes()
    assert not out.exists()
    if sig == signal.SIGTERM:  # handled like Ctrl-C: it cleans up after itself
        assert b"terminated" in err and b"Traceback" not in err
        assert list((ws.root / "out").iterdir()) == []
    ws.jsonl("qa.jsonl", [{"image": f"{i % 4}.png", "question": f"Question {i}?", "answers": ["a"]}
                          for i in range(8)])
    done = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(datasets.load_from_disk(str(out))["train"]) == 8
    assert [p.name for p in (ws.root / "out").iterdir()] == ["slow"]  # the dead build's partial is gone


# --- images keep their content, labels their meaning ---------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_greyscale_is_windowed_not_clipped(ws: Workspace, fmt: str) -> None:
    import numpy as np
    from PIL import Image

    levels = (np.arange(64, dtype=np.uint16) * 64 + 1000).reshape(8, 8).repeat(4, 0).repeat(4, 1)  # 64 levels
    Image.fromarray(levels).save(ws.path(f"imgs/xray.{fmt.lower()}"), format=fmt)
    ws.jsonl("qa.jsonl", [{"image": f"xray.{fmt.lower()}", "question": "Findings?", "answers": ["none"]}])
    recipe = {"name": "depth", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl", "image_root": "imgs"}]}
    built = ws.build(recipe)
    grey = np.asarray(built.image(built.rows[0]).convert("L"))
    assert len(np.unique(grey)) == 64  # every level kept (clipping gave 2, 98 % white)
    assert grey.min() == 0 and grey.max() == 255
    assert (np.diff(np.unique(grey)) > 0).all()
    order = np.argsort(levels.ravel(), kind="stable")
    assert (np.diff(grey.ravel()[order].astype(int)) >= 0).all()  # monotone: brighter stays brighter
    (window,) = built.rows[0]["meta"]["depth_window"]  # the row says what was done to its picture
    assert window == {"mode": "I;16", "method": "minmax", "low": 1000.0, "high": 1000.0 + 63 * 64}
    pct = ws.build({**recipe, "images": {"depth": {"method": "percentile", "low": 10, "high": 90}}}, out="pct")
    g2 = np.asarray(pct.image(pct.rows[0]).convert("L"))
    assert (g2 == 0).mean() >= 0.09 and (g2 == 255).mean() >= 0.09  # the recipe's window is used


def _deflated_dicom(path: Path, *, rows: int, cols: int) -> None:
    """A deflated DICOM whose header says rows x cols 8-bit pixels, all zeros: tiny on disk, huge decoded."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "OT"
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.PhotometricInterpretation = rows, cols, 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    n = rows * cols
    pixel_header = b"\xe0\x7f\x10\x00OB\x00\x00" + n.to_bytes(4, "little")
    comp = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    head = io.BytesIO()
    head.write(b"\0" * 128 + b"DICM")
    meta_buf = DicomBytesIO()
    meta_buf.is_little_endian, meta_buf.is_implicit_VR = True, False
    write_file_meta_info(meta_buf, meta, enforce_standard=True)
    head.write(meta_buf.getvalue())
    with path.open("wb") as f:
        f.write(head.getvalue())
        f.write(comp.compress(body.getvalue() + pixel_header))
        zeros = b"\0" * (1 << 24)
        for _ in range(n // len(zeros)):
            f.write(comp.compress(zeros))
        f.write(comp.compress(b"\0" * (n % len(zeros))))
        f.write(comp.flush())
    assert pydicom.uid.UID(DeflatedExplicitVRLittleEndian) != ExplicitVRLittleEndian


def test_dicom_max_pixels_is_checked_from_the_header_before_decoding(ws: Workspace) -> None:
    import resource

    _deflated_dicom(ws.path("scans/huge.dcm"), rows=20000, cols=20000)
    assert ws.path("scans/huge.dcm").stat().st_size < 2_000_000
    ws.copy(Path(__import__("pydicom").data.get_testdata_file("CT_small.dcm", download=False)), "scans/ct.dcm")
    ws.jsonl("labels.jsonl", [{"file_name": "huge.dcm", "caption": "Nothing."}, {"file_name": "ct.dcm",
                                                                                 "caption": "A CT slice."}])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    built = ws.build({"name": "dcm", "engine": {"kind": "local", "workers": 1},
                      "sources": [{"name": "scans", "kind": "dicom", "path": "scans", "labels": "labels.jsonl",
                                   "task": "caption"}]})
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert [(r["reason"], r["locator"]) for r in built.rejects] == [("image_too_large", "huge.dcm")]
    assert "400000000 pixels" in built.rejects[0]["detail"]
    assert len(built.rows) == 1
    assert grown_mb < 300, f"peak memory grew by {grown_mb:.0f} MB: the pixel data was inflated"


def test_duplicate_ids_are_a_manifest_warning_with_a_dedup_suggestion(ws: Workspace) -> None:
    ws.image("imgs/0.png", seed=0)
    ws.image("imgs/1.png", seed=1)
    row = {"image": "0.png", "question": "Same?", "answers": ["yes"]}
    ws.jsonl("qa.jsonl", [row, {"image": "1.png", "question": "Other?", "answers": ["no"]}, row])
    built = ws.build({"name": "dups", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl",
                                                   "image_root": "imgs"}]})
    assert len(built.rows) == 3
    (warning,) = built.manifest["warnings"]
    assert warning["kind"] == "duplicate_ids" and warning["count"] == 1
    assert warning["examples"] == [built.rows[0]["id"]] and "dedup" in warning["message"]
    clean = ws.build({"name": "dups", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl",
                                                   "image_root": "imgs"}], "dedup": {"text": {"method": "exact"}}})
    assert "warnings" not in clean.manifest


def test_source_reader_crash_is_a_reject_and_other_sources_go_on(ws: Workspace) -> None:
    ws.image("imgs/0.png", seed=0)
    ws.jsonl("qa.jsonl", [{"image": "0.png", "question": "Fine?", "answers": ["yes"]}])
    ws.write("broken.parquet", b"PAR1 this is not parquet PAR1")
    built = ws.build({"name": "mixed", "sources": [
        {"name": "bad", "kind": "parquet", "path": "broken.parquet", "image_root": "imgs"},
        {"name": "qa", "kind": "jsonl", "path": "qa.jsonl", "image_root": "imgs"}]})
    assert len(built.rows) == 1
    (reject,) = built.rejects
    assert (reject["reason"], reject["source"], reject["stage"]) == ("internal_error", "bad", "load")
    assert Counter(r["reason"] for r in built.rejects) == Counter(built.manifest["rejects"])


def test_global_steps_key_and_apply_errors_are_row_rejects(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-row boundary holds for the barrier steps too: a row whose `key` or `apply` raises is rejected
    (`internal_error`, the step's name as stage), the other rows of its batch go on (2 workers)."""
    from vlmdata.steps.mix import MixStep
    from vlmdata.steps.split import SplitStep

    def poisoned(method: str, word: str, cls: type) -> None:
        original = getattr(cls, method)

        def wrapped(self: Any, batch: list[dict[str, Any]], *args: Any) -> Any:
            if any(word in json.dumps(r["messages"]) for r in batch):
                raise ValueError(f"{method} cannot handle {word}")
            return original(self, batch, *args)

        monkeypatch.setattr(cls, method, wrapped)

    poisoned("key", "poison-key", SplitStep)
    poisoned("apply", "poison-apply", MixStep)
    for i in range(8):
        ws.image(f"imgs/{i}.png", seed=i)
    questions = [f"Question {i}?" for i in range(6)] + ["A poison-key question?", "A poison-apply question?"]
    ws.jsonl("qa.jsonl", [{"image": f"{i}.png", "question": q, "answers": ["a"]} for i, q in enumerate(questions)])
    from vlmdata.build import build

    loaded = ws.load({"name": "barriers", "batch_size": 4,
                      "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl", "image_root": "imgs"}],
                      "split": {"validation": 0.0, "test": 0.0}, "mix": {"temperature": 1.0}})
    result = build(loaded, out=ws.root / "out", progress=False, workers=2)
    built = Built(path=result.path, manifest=result.manifest)
    assert built.manifest["rejects"] == {"internal_error": 2}
    assert sorted((r["stage"], r["locator"]) for r in built.rejects) == [("mix", "qa.jsonl:8"), ("split", "qa.jsonl:7")]
    assert all("ValueError" in r["detail"] for r in built.rejects)
    assert len(datasets.load_from_disk(str(built.path))["train"]) == 6
    stages = {s["stage"]: s for s in built.manifest["stages"]}
    assert stages["split"]["in"] == 8 and stages["split"]["out"] == 7


def test_a_row_the_writer_cannot_store_is_a_write_reject(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    """The last boundary: a row whose values do not fit the contract's Arrow types (here a lone surrogate
    that slipped past every step) is rejected at `write`; the other rows of its batch are written."""
    from vlmdata.steps.instruct import InstructStep

    original = InstructStep.map

    def sneaky(self: Any, batch: list[dict[str, Any]]) -> Any:
        for row in original(self, batch):
            if isinstance(row, dict) and "sneaky" in json.dumps(row["messages"]):
                row["answers"] = ["bad \udce9 text"]
            yield row

    monkeypatch.setattr(InstructStep, "map", sneaky)
    for i in range(3):
        ws.image(f"imgs/{i}.png", seed=i)
    ws.jsonl("qa.jsonl", [{"image": f"{i}.png", "question": q, "answers": ["a"]}
                          for i, q in enumerate(["One?", "A sneaky one?", "Three?"])])
    built = ws.build({"name": "w", "sources": [{"name": "qa", "kind": "jsonl", "path": "qa.jsonl",
                                                "image_root": "imgs"}]})
    assert len(datasets.load_from_disk(str(built.path))["train"]) == 2
    (reject,) = built.rejects
    assert (reject["stage"], reject["reason"], reject["locator"]) == ("write", "internal_error", "qa.jsonl:2")
    assert built.manifest["stages"][-1] == {"stage": "write", "in": 3, "out": 2, "rejected": {"internal_error": 1}}


def test_coco_and_vqav2_bad_bytes_and_annotations_are_row_rejects(ws: Workspace) -> None:
    """The whole-file JSON sources follow the same policy: a caption or question with invalid UTF-8 rejects
    its own row (`bad_encoding`: image 1, whose other caption is fine, is not built from half its labels),
    a broken COCO annotation is `malformed_annotation`; the rest is built."""
    from synth_kit import coco

    paths = coco(ws, n=3)
    caps = json.loads(ws.path(paths["captions"]).read_text())
    caps["annotations"][0]["caption"] = "BADBYTES here"
    caps["annotations"].append({"caption": "no image id"})
    ws.write(paths["captions"], json.dumps(caps).encode().replace(b"BADBYTES", b"\xff\xfe"))
    for image_id in (1, 2):
        ws.image(f"vqa/COCO_val2014_{image_id:012d}.jpg", seed=image_id, fmt="JPEG")
    questions = {"data_subtype": "val2014", "questions": [
        {"image_id": 1, "question": "How many BADBYTES?", "question_id": 1},
        {"image_id": 2, "question": "Is it sunny?", "question_id": 2}]}
    ws.write("vqa/q.json", json.dumps(questions).encode().replace(b"BADBYTES", b"\xc0\xaf"))
    ws.write("vqa/a.json", json.dumps({"annotations": [
        {"question_id": q, "image_id": q, "answers": [{"answer": "yes"}] * 10, "multiple_choice_answer": "yes"}
        for q in (1, 2)]}))
    built = ws.build({"name": "json-files", "sources": [
        {"name": "coco", "kind": "coco", "path": paths["path"], "captions": paths["captions"]},
        {"name": "vqa", "kind": "vqav2", "questions": "vqa/q.json", "annotations": "vqa/a.json",
         "image_root": "vqa"}]})
    assert sorted((r["source"], r["reason"], r["locator"]) for r in built.rejects) == [
        ("coco", "bad_encoding", "000000000001.png#1"), ("coco", "malformed_annotation", "captions.json:annotations[6]"),
        ("vqa", "bad_encoding", "q.json[0]")]
    assert built.manifest["sources"] == {"coco": 2, "vqa": 1}
    assert all("\ufffd" not in json.dumps(r["messages"]) for r in built.rows)  # never silently replaced


def test_a_byte_order_mark_is_not_part_of_the_first_column(ws: Workspace) -> None:
    ws.image("imgs/0.png", seed=0)
    ws.image("imgs/1.png", seed=1)
    ws.write("t.csv", "\ufeffimage,question,answer\n0.png,Excel wrote me?,yes\n".encode())
    ws.write("t.jsonl", "\ufeff" + json.dumps({"image": "1.png", "question": "First line?", "answers": ["yes"]}) + "\n")
    built = ws.build({"name": "bom", "sources": [
        {"name": "csv", "kind": "csv", "path": "t.csv", "image_root": "imgs", "fields": {"image": "image"}},
        {"name": "jsonl", "kind": "jsonl", "path": "t.jsonl", "image_root": "imgs"}]})
    assert built.manifest["rejects"] == {} and built.manifest["sources"] == {"csv": 1, "jsonl": 1}


def test_a_source_that_cannot_be_read_at_all_stops_the_build_by_name(ws: Workspace, small: Path) -> None:
    """Not every failure is a row's: a split that does not exist stops the build (exit 2, one line, no
    traceback, nothing written) instead of turning into a reject of an empty source."""
    ws.build(small, out="saved")
    recipe = ws.recipe({"name": "from-hf", "sources": [{"name": "saved", "kind": "hf", "path": "saved",
                                                        "split": "validation"}]}, "hf.yaml")
    code, text = invoke("build", recipe, "-o", ws.root / "out/hf", "-q")
    assert code == 2 and "split 'validation' not in ['train']" in text and "Traceback" not in text
    assert not (ws.root / "out/hf").exists()


def test_a_montage_counts_all_its_tiles_against_max_pixels(ws: Workspace) -> None:
    """4 tiles of 128² (16 384 pixels each) pass max_pixels 20 000 one by one, not together: the montage row is
    `image_too_large` before any tile is decoded; single slices of the same series still build."""
    from test_dicom_series import write_series

    write_series(ws)
    source = {"name": "ct", "kind": "dicom", "path": "ct", "group": "series", "window": "auto"}
    recipe = {"name": "s", "images": {"max_pixels": 20_000}, "instruct": {"report": {"template": "medical/report"}}}
    montage = ws.build({**recipe, "sources": [{**source, "slices": {"montage": {"rows": 2, "cols": 2}}}]})
    assert [(r["reason"], r["locator"]) for r in montage.rejects] == [("image_too_large", "slice_1.dcm#series")]
    assert "4 tiles hold 65536 pixels > max_pixels 20000" in montage.rejects[0]["detail"]
    single = ws.build({**recipe, "sources": [{**source, "slices": {"count": 2}}]}, out="single")
    assert single.manifest["rejects"] == {} and len(single.rows) == 2
