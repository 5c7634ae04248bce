"""`vlmtrain` command line: tiny, validate, run (--resume), predict, eval, score, merge, report.

Kept light: torch, transformers and peft are imported inside the commands, so `--help` and config
errors answer in well under a second. Config problems go to stderr, all at once, with exit code 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from vlmdata.config.errors import ConfigError
from vlmtrain.config.train import load_train_config
from vlmtrain.data.dataset import open_split
from vlmtrain.evaluation.evaluate import EvalResult, evaluate
from vlmtrain.evaluation.predict import generate, load_run
from vlmtrain.evaluation.report import report as make_report
from vlmtrain.evaluation.score_file import score_predictions
from vlmtrain.models.check import check_model
from vlmtrain.models.merge import merge_run
from vlmtrain.models.preflight import preflight
from vlmtrain.models.tiny.registry import FAMILIES, write_tiny
from vlmtrain.training.finite_guard import NonFiniteError

EXIT_CONFIG = 2
EXIT_DIVERGED = 3  # the loss, a gradient norm or a weight turned inf/NaN (vlmtrain.training.finite_guard)


def _fail(err: ConfigError) -> None:
    click.echo(str(err), err=True)
    sys.exit(EXIT_CONFIG)


@click.group()
def main() -> None:
    """Fine-tune vision-language models on vlmdata outputs."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # we fork dataloader workers after tokenising


@main.command()
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--family", type=click.Choice(sorted(FAMILIES)), required=True, help="Model family to build.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the random weights.")
def tiny(out: Path, family: str, seed: int) -> None:
    """Write a tiny random-weight model + processor of FAMILY to OUT (offline; for tests and smoke runs)."""
    write_tiny(out=out, family=family, seed=seed)
    click.echo(f"wrote tiny {family} model and processor to {out}")


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. train.lr=1e-4.")
@click.option("--config-only", is_flag=True, help="Skip the checks against the model's config.json and processor.")
def validate(config: Path, overrides: tuple[str, ...], config_only: bool) -> None:
    """Check CONFIG, the files it names, its model, LoRA targets and a sample of its rows, without loading weights.

    The model's config.json and processor are read: its family must be supported, its processor
    settings valid and its chat template usable for answer-only training. LoRA targets are matched
    against the model built on the meta device from its config.json; the first rows of each data source
    are tokenised with the model's processor (vlmtrain.models.preflight).
    """
    try:
        cfg = load_train_config(config, overrides=list(overrides))
        if not config_only:
            check_model(cfg)
            preflight(config=cfg, echo=click.echo)
    except ConfigError as err:
        _fail(err)
    click.echo(f"{config}: ok (run folder: {cfg.run_dir})")


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. train.lr=1e-4.")
@click.option("--resume", is_flag=True, help="Continue from the run folder's last checkpoint-N (train.save_every).")
def run(config: Path, overrides: tuple[str, ...], resume: bool) -> None:
    """Fine-tune with LoRA as CONFIG says; writes runs/NAME/ (adapter, processor, config.yaml, log.jsonl)."""
    try:
        cfg = load_train_config(config, overrides=list(overrides))
        from vlmtrain.recipes.run import run as run_recipe  # torch and transformers: only once a run starts

        run_recipe(config=cfg, echo=click.echo, resume=resume)
    except ConfigError as err:
        _fail(err)
    except NonFiniteError as err:
        click.echo(f"NonFiniteError: {err}", err=True)
        sys.exit(EXIT_DIVERGED)


@main.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--prompt", required=True, help="The question about the image.")
@click.option("--system", default=None, help="A system message before the question (as in training rows).")
@click.option("--max-new-tokens", type=int, default=32, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto (the GPU if there is one), cpu, cuda, cuda:N.")
def predict(run_dir: Path, image: Path, prompt: str, system: str | None, max_new_tokens: int, device: str) -> None:
    """Answer PROMPT about IMAGE with the base model + the LoRA adapter of RUN (greedy)."""
    from PIL import Image

    model, processor = load_run(run_dir=run_dir, device=device)
    with Image.open(image) as img:
        answer = generate(
            model=model, processor=processor, image=img, prompt=prompt, system=system, max_new_tokens=max_new_tokens
        )
    click.echo(answer.text)


def _data_arg(value: str) -> tuple[Path, str]:
    """`OUT[:split]` -> (folder, split); the split defaults to 'validation'."""
    folder, sep, split = value.rpartition(":")
    if sep and folder and "/" not in split and Path(folder).is_dir():
        return Path(folder), split
    return Path(value), "validation"


@main.command(name="eval")
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", "data", required=True, metavar="OUT[:SPLIT]", help="A vlmdata output and split (default: validation).")
@click.option("--max-new-tokens", type=int, default=32, show_default=True)
@click.option("--limit", type=int, default=None, help="Evaluate the first N rows only.")
@click.option("--batch-size", type=int, default=8, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="Default: the run folder.")
@click.option("--device", default="auto", show_default=True, help="auto (the GPU if there is one), cpu, cuda, cuda:N.")
def eval_(run_dir: Path, data: str, max_new_tokens: int, limit: int | None, batch_size: int, out: Path | None,
          device: str) -> None:
    """Generate answers for a split with RUN (greedy, batched); score VQA accuracy and exact match per task."""
    folder, split = _data_arg(data)
    try:
        dataset = open_split(path=folder, split=split)
    except ConfigError as err:
        _fail(err)
    model, processor = load_run(run_dir=run_dir, device=device)
    try:
        result = evaluate(model=model, processor=processor, dataset=dataset, max_new_tokens=max_new_tokens,
                          batch_size=batch_size, limit=limit)
    except ConfigError as err:
        _fail(err)
    _write_scores(result=result, out=out or run_dir)


def _write_scores(*, result: object, out: Path) -> None:
    assert isinstance(result, EvalResult)
    result.write(out_dir=out)
    if result.rejected:
        click.echo(f"{len(result.rejected)} row(s) could not be asked and are not scored; listed in "
                   f"{out / 'eval_rejected.jsonl'}")
    for task, m in result.metrics.items():
        click.echo(f"{task:<16} rows {int(m['rows']):>6}  vqa_accuracy {m['vqa_accuracy']:.4f}  "
                   f"exact_match {m['exact_match']:.4f}")
    click.echo(f"wrote predictions.jsonl and metrics.json to {out}")


@main.command()
@click.option("--data", "data", required=True, metavar="OUT[:SPLIT]", help="A vlmdata output and split (default: validation).")
@click.option("--predictions", "predictions", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help='Official VQA results JSON ([{"question_id", "answer"}]) or JSON lines of {"id", "prediction"}.')
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Where predictions.jsonl and metrics.json go.")
def score(data: str, predictions: Path, out: Path) -> None:
    """Score answers made elsewhere against a split's raw human answers, exactly as `eval` scores its own."""
    folder, split = _data_arg(data)
    try:
        result = score_predictions(dataset=open_split(path=folder, split=split), path=predictions)
    except ConfigError as err:
        _fail(err)
    _write_scores(result=result, out=out)


@main.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
def merge(run_dir: Path, out: Path) -> None:
    """Merge RUN's LoRA adapter into the base weights; save model + processor to OUT (plain transformers)."""
    merge_run(run_dir=run_dir, out=out)
    click.echo(f"wrote the merged model and processor to {out}")


@main.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False, path_type=Path))
def report(run_dir: Path) -> None:
    """Print RUN's continual scores (matrix, average accuracy, BWT, forgetting); write matrix/curves/losses PNGs."""
    text, written = make_report(run_dir=run_dir)
    click.echo(text)
    for path in written:
        click.echo(f"wrote {path}")
