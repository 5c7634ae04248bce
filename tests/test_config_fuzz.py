"""The config fuzzer (tests/fuzz_kit.py) over every shipped vlmdata recipe: each seeded mutant is either
valid or refused with named problems; zero tracebacks. Training configs: tests/vlmtrain/config/test_train_config_fuzz.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from fuzz_kit import fuzz  # noqa: E402

from vlmdata.config.errors import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PER_CONFIG = 150


def check_recipe(path: Path, overrides: list[str]) -> int:
    from vlmdata.plan import make_plan
    from vlmdata.recipe import load_recipe

    make_plan(load_recipe(path, overrides=overrides))  # "ok" must also mean the steps can be set up
    return 0


@pytest.mark.parametrize("config", sorted((ROOT / "recipes").glob("*.yaml")), ids=lambda p: p.name)
def test_recipe_mutants_are_ok_or_named_problems(tmp_path: Path, config: Path) -> None:
    from vlmdata.recipe import Recipe

    stats = fuzz(configs=[config], model=Recipe, check=check_recipe, expected=ConfigError,
                 per_config=PER_CONFIG, seed=0, workdir=tmp_path)
    assert stats.crashes == [], "\n".join(stats.crashes[:20])
    assert stats.mutants == PER_CONFIG and stats.refused > PER_CONFIG // 2  # the mutations really break things
