"""Non-finite numbers: refused at validation with their YAML path; a run that diverges stops with
NonFiniteError, keeps its last good checkpoint, saves no NaN adapter, and log.jsonl stays strict JSON."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from vlmdata.config.errors import ConfigError
from vlmtrain.cli import main
from vlmtrain.config.train import load_train_config


def _strict(text: str) -> list[dict]:
    def refuse(token: str) -> float:
        raise AssertionError(f"log.jsonl holds the non-JSON token {token}")

    return [json.loads(line, parse_constant=refuse) for line in text.splitlines()]


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e999", "'inf'", "'NaN'"])
def test_nonfinite_numbers_are_refused_with_their_path(tiny_llava, colour_dataset, write_config, value):
    path = write_config(
        f"name: t\nmodel: {{path: {tiny_llava}}}\ndata: {{path: {colour_dataset}}}\n"
        f"train: {{lr: {value}, max_grad_norm: {value}}}\nlora: {{alpha: {value}, dropout: {value}}}\n"
        f"multitask: {{loss: {{clamp: [{value}, 4.0]}}}}\n")
    with pytest.raises(ConfigError) as err:
        load_train_config(path)
    problems = {p.path: p.message for p in err.value.problems}
    for key in ("train.lr", "train.max_grad_norm", "lora.alpha", "lora.dropout", "multitask.loss.clamp[0]"):
        assert key in problems, (key, problems)
        assert "finite" in problems[key], (key, problems[key])
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2 and "train.lr:" in result.output and "Traceback" not in result.output


def test_set_override_to_inf_is_refused(tiny_llava, colour_dataset, write_config):
    path = write_config(f"name: t\nmodel: {{path: {tiny_llava}}}\ndata: {{path: {colour_dataset}}}\n")
    result = CliRunner().invoke(main, ["validate", str(path), "--set", "train.lr=.inf"])
    assert result.exit_code == 2 and "train.lr: .inf is not a finite number" in result.output, result.output


@pytest.mark.slow
def test_a_diverging_run_stops_and_keeps_the_last_good_checkpoint(tiny_llava, colour_dataset, tmp_path):
    """lr 1e30 is finite (so valid) but the first update makes the weights overflow at step 2."""
    from safetensors.torch import load_file

    run = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text(
        f"name: t\nseed: 0\nmodel: {{path: {tiny_llava}}}\ndata: {{path: {colour_dataset}, max_length: 64}}\n"
        "lora: {r: 4, alpha: 8, dropout: 0.0}\n"
        "train: {steps: 4, batch_size: 2, lr: 1.0e+30, scheduler: constant, save_every: 1, device: cpu}\n"
        f"output: {{dir: {run}}}\n")
    result = CliRunner().invoke(main, ["run", str(config)])
    assert result.exit_code == 3, result.output + repr(result.exception)
    assert "NonFiniteError: the " in result.output and "at step 2" in result.output, result.output
    assert f"last good checkpoint is {run / 'checkpoint-1'}" in result.output
    assert not (run / "adapter_model.safetensors").exists()  # no NaN adapter as the run's result
    assert sorted(p.name for p in run.glob("checkpoint-*")) == ["checkpoint-1"]
    weights = load_file(str(run / "checkpoint-1" / "adapter_model.safetensors"))
    assert weights and all(bool(t.isfinite().all()) for t in weights.values())
    log = _strict((run / "log.jsonl").read_text())
    assert [r["step"] for r in log] == [1] and math.isfinite(log[0]["loss"])
