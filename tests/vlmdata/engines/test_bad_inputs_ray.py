"""The bad-input corpus of test_bad_inputs.py on the Ray engine: the same rejects with the same reasons,
the same good rows, and a step's exception inside a Ray task is a row's `internal_error`, not a dead build."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import ray  # the dev extra installs it; a missing ray is a failure, not a skip
from test_bad_inputs import _corpus, check_corpus
from vlmdata_kit import Built, Workspace

HERE = Path(__file__).parents[1]  # the kits' folder


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    # the corpus's user filter (bad_steps.Boom) must import in Ray's worker processes too
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(HERE)}})
    yield
    ray.shutdown()


def test_corpus_on_ray_matches_the_local_engine(ws: Workspace) -> None:
    from vlmdata.build import build

    recipe = _corpus(ws)
    on_ray = build(ws.load(recipe), out=ws.root / "ray", progress=False, engine="ray")
    check_corpus(Built(path=on_ray.path, manifest=on_ray.manifest))
    local = build(ws.load(recipe), out=ws.root / "local", progress=False, workers=2)
    assert (ws.root / "ray/rejects.jsonl").read_text() == (ws.root / "local/rejects.jsonl").read_text()
    assert on_ray.manifest["stages"] == local.manifest["stages"]
