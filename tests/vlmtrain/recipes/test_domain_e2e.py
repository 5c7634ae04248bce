"""The satellite and document examples end to end: `vlmdata build recipes/<domain>.yaml` on the real
example files, then `vlmtrain run recipes/train/<domain>-tiny.yaml` on the session's tiny LLaVA: every
row trains at the config's max_length, the loss falls, and the adapter generates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[3]
NEEDS = {"satellite": "rasterio", "document": "pypdfium2"}


@pytest.mark.slow
@pytest.mark.parametrize("domain", ["satellite", "document"])
def test_domain_example_builds_and_trains(domain: str, tmp_path: Path, tiny_llava: Path) -> None:
    pytest.importorskip(NEEDS[domain])  # the [geo] / [pdf] extra; the dev extra installs both
    from vlmdata.cli import main as vlmdata_main
    from vlmtrain.cli import main as vlmtrain_main

    data = tmp_path / "out" / domain
    built = CliRunner().invoke(vlmdata_main, ["build", str(ROOT / "recipes" / f"{domain}.yaml"), "-o", str(data), "-q"])
    assert built.exit_code == 0, built.output
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["splits"]["train"] >= 10 and manifest["splits"]["validation"] >= 1

    run_dir = tmp_path / "run"
    args = ["run", str(ROOT / "recipes" / "train" / f"{domain}-tiny.yaml")]
    for s in (f"model.path={tiny_llava}", f"data.path={data}", f"output.dir={run_dir}", "train.steps=20",
              "train.log_every=1"):
        args += ["--set", s]
    trained = CliRunner().invoke(vlmtrain_main, args)
    assert trained.exit_code == 0, trained.output + repr(trained.exception)
    assert "rejected" not in trained.output  # every row fits data.max_length with its image tokens

    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert len(log) == 20
    first = sum(r["loss"] for r in log[:3]) / 3
    last = sum(r["loss"] for r in log[-3:]) / 3
    assert last < 0.75 * first, f"loss did not fall: {first:.2f} -> {last:.2f}"

    from datasets import load_from_disk

    from vlmtrain.evaluation.predict import generate, load_run

    model, processor = load_run(run_dir=run_dir)
    row = load_from_disk(str(data))["validation"][0]
    prompt = next(p["text"] for p in row["messages"][0]["content"] if p["type"] == "text")
    answer = generate(model=model, processor=processor, image=row["images"][0], prompt=prompt, max_new_tokens=8)
    assert answer.token_ids, "generate produced no tokens"
