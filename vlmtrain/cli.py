"""`vlmtrain` command line: tiny, validate, run, predict.

Kept light: torch, transformers and peft are imported inside the commands, so `--help` and config
errors answer in well under a second. Config problems go to stderr, all at once, with exit code 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from vlmdata.validation import ConfigError
from vlmtrain.tiny import FAMILIES

EXIT_CONFIG = 2


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
    from vlmtrain.tiny import write_tiny

    write_tiny(out=out, family=family, seed=seed)
    click.echo(f"wrote tiny {family} model and processor to {out}")


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. train.lr=1e-4.")
def validate(config: Path, overrides: tuple[str, ...]) -> None:
    """Check CONFIG (and the files it names) without loading a model."""
    from vlmtrain.config import load_train_config

    try:
        cfg = load_train_config(config, overrides=list(overrides))
    except ConfigError as err:
        _fail(err)
    click.echo(f"{config}: ok (run folder: {cfg.run_dir})")


@main.command()
@click.argument("config", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key, e.g. train.lr=1e-4.")
def run(config: Path, overrides: tuple[str, ...]) -> None:
    """Fine-tune with LoRA as CONFIG says; writes runs/NAME/ (adapter, processor, config.yaml, log.jsonl)."""
    from vlmtrain.config import load_train_config

    try:
        cfg = load_train_config(config, overrides=list(overrides))
        from vlmtrain.recipe import run as run_recipe

        run_recipe(config=cfg, echo=click.echo)
    except ConfigError as err:
        _fail(err)


@main.command()
@click.argument("run_dir", metavar="RUN", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--image", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True)
@click.option("--prompt", required=True, help="The question about the image.")
@click.option("--max-new-tokens", type=int, default=32, show_default=True)
def predict(run_dir: Path, image: Path, prompt: str, max_new_tokens: int) -> None:
    """Answer PROMPT about IMAGE with the base model + the LoRA adapter of RUN (greedy)."""
    from PIL import Image

    from vlmtrain.predict import generate, load_run

    model, processor = load_run(run_dir=run_dir)
    with Image.open(image) as img:
        answer = generate(model=model, processor=processor, image=img, prompt=prompt, max_new_tokens=max_new_tokens)
    click.echo(answer.text)
