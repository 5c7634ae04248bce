"""Synthesize: rows (labels + context) → NEW rows whose turns an LLM wrote from a template.

For each job (`synthesize:` in the recipe) and each row of its `from` sources, the template renders a
prompt from the row's context and fields (`n` samples per row); answers come from the cache or the
endpoint (online, with bounded concurrency, or through the Batch API) and are parsed into chat turns,
images in the first user turn. The source rows pass through unless every job reading their source
sets `keep_source_rows: false`. All requests of one engine batch, across jobs, run concurrently in one
event loop, so throughput approaches concurrency / latency; raise the recipe's `batch_size` above
`concurrency` to keep the pipe full.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from vlmdata.rows import Reject, RowError
from vlmdata.schema import image_part, message, row_id, text_part
from vlmdata.steps.base import MapStep, Row
from vlmdata.synth.cache import ResponseCache
from vlmdata.synth.cost import Ledger, price_for
from vlmdata.synth.grounding import check_counts
from vlmdata.synth.parse import check, parse
from vlmdata.synth.prompt import Request, build_request, render_chat, template_context
from vlmdata.synth.run import JobState, Outcome, run_job
from vlmdata.synth.spec import SynthesizeSpec
from vlmdata.templates_lib import Template, load_template

__all__ = ["SynthesizeSpec", "SynthesizeStep"]
log = logging.getLogger("vlmdata.synth")
TEXT_PROMPTS = (
    "Describe this image in detail.",
    "Give a thorough description of everything visible in the picture.",
    "What is happening in this image? Describe it at length.",
    "Write a detailed account of the scene shown here.",
    "Explain the contents of this image as completely as you can.",
)


class SynthesizeStep(MapStep):
    name: ClassVar[str] = "synthesize"
    runs_on_driver: ClassVar[bool] = True  # one cache, one rate limit, one budget for the whole build

    def __init__(self, *, specs: list[SynthesizeSpec], seed: int, base_dir: Path, cache_dir: Path) -> None:
        self.seed = seed
        self.cache_dir = cache_dir
        self.jobs = [JobState(spec=s, index=i, ledger=Ledger(price=price_for(s.model, s.prices), batch=s.mode == "batch"))
                     for i, s in enumerate(specs)]
        self.templates: dict[str, Template] = {s.name: load_template(s.template, base_dir=base_dir) for s in specs}
        readers = {src for s in specs for src in s.from_}
        self.drop_sources = {src for src in readers if all(not s.keep_source_rows for s in specs if src in s.from_)}
        self._caches: dict[Path, ResponseCache] = {}
        self._warned: set[str] = set()
        self._passed = 0  # source rows passed through (not attempts of this step)

    def map(self, batch: list[Row]) -> Iterator[Row | Reject]:
        work: list[tuple[JobState, Row, Request, str | None]] = []
        for row in batch:
            if row["source"] not in self.drop_sources:
                self._passed += 1
                yield row
            for job in self.jobs:
                if row["source"] not in job.spec.from_:
                    continue
                try:
                    work += self._requests(job, row)
                except RowError as e:
                    yield self._reject(job, row, e.reason, e.detail, raw=None, key=None)
        if not work:
            return
        outcomes = asyncio.run(self._run(work))
        for (job, row, request, prompt), outcome in zip(work, outcomes, strict=True):
            yield self._row(job, row, request, prompt, outcome)
        for job in self.jobs:
            if job.ledger.budget_hit and job.spec.name not in self._warned:
                self._warned.add(job.spec.name)
                log.warning("synthesize job '%s': max_cost_usd=%s reached; no new requests are sent, unsent rows "
                            "are rejected as budget_exhausted", job.spec.name, job.spec.max_cost_usd)

    def job_cache_dir(self, job: JobState) -> Path:
        """A job's own `cache_dir` when the recipe gives one, else the build's (`--cache`, or OUT/../.vlmdata-cache)."""
        return job.spec.cache_dir or self.cache_dir

    def _cache(self, job: JobState) -> ResponseCache:
        where = self.job_cache_dir(job)
        if where not in self._caches:
            self._caches[where] = ResponseCache(directory=where)
        return self._caches[where]

    async def _run(self, work: list[tuple[JobState, Row, Request, str | None]]) -> list[Outcome]:
        by_job: dict[int, list[Request]] = {}
        for job, _, request, _ in work:
            by_job.setdefault(job.index, []).append(request)
        results = await asyncio.gather(*(run_job(job=self.jobs[i], cache=self._cache(self.jobs[i]), requests=reqs,
                                                 spool=self.job_cache_dir(self.jobs[i]) / "batches")
                                         for i, reqs in by_job.items()))
        queues = {i: iter(res) for i, res in zip(by_job, results, strict=True)}
        return [next(queues[job.index]) for job, _, _, _ in work]

    def _requests(self, job: JobState, row: Row) -> list[tuple[JobState, Row, Request, str | None]]:
        spec = job.spec
        ctx = template_context(context=row["context"], fields=row["fields"], n_images=len(row["images"]))
        chat = render_chat(self.templates[spec.name], ctx)
        out = []
        for sample in range(spec.n):
            request = build_request(spec=spec, chat=chat, images=row["images"], image_hashes=row["image_hashes"],
                                    image_sizes=row["image_sizes"], sample=sample, base_url=spec.base_url())
            prompt = None
            if spec.parse == "text":
                rng = random.Random(f"{self.seed}:{spec.name}:{':'.join(row['image_hashes'])}:"
                                    f"{row['meta']['locator']}:{sample}")
                prompt = rng.choice(spec.prompts or TEXT_PROMPTS)
            out.append((job, row, request, prompt))
        return out

    def _row(self, job: JobState, row: Row, request: Request, prompt: str | None, outcome: Outcome) -> Row | Reject:
        spec = job.spec
        if outcome.failure is not None:
            return self._reject(job, row, outcome.failure.reason, outcome.failure.detail, raw=None, key=request.key)
        response = outcome.response
        assert response is not None
        try:
            check(response)
            pairs = parse(spec.parse, response.text, prompt=prompt)
            if spec.grounding:
                check_counts(pairs, row["context"])
        except RowError as e:
            return self._reject(job, row, e.reason, e.detail, raw=response.text, key=request.key)
        messages: list[dict[str, Any]] = []
        for i, (question, answer) in enumerate(pairs):
            images = [image_part() for _ in row["images"]] if i == 0 else []
            messages += [message("user", [*images, text_part(question)]), message("assistant", [text_part(answer)])]
        template = self.templates[spec.name]
        meta = {k: row["meta"][k] for k in ("source", "source_kind", "locator") if k in row["meta"]}
        meta.update({"from_row": row.get("id"), "job": spec.name, "template": {"name": template.name,
                     "sha256": template.sha256}, "model": spec.model, "request": request.key, "sample": request.sample,
                     "mode": spec.mode, "cached": outcome.cached, "cost_usd": round(outcome.cost_usd, 8),
                     "tokens": {"prompt": response.prompt_tokens, "completion": response.completion_tokens}})
        return {"id": row_id(image_hashes=row["image_hashes"], messages=messages), "task": spec.task,
                "source": row["source"], "images": row["images"], "image_hashes": row["image_hashes"],
                "image_sizes": row["image_sizes"], "messages": messages, "answers": [], "fields": {},
                "context": row["context"], "meta": meta}

    def _reject(self, job: JobState, row: Row, reason: str, detail: str, *, raw: str | None, key: str | None) -> Reject:
        extra: dict[str, Any] = {"job": job.spec.name}
        if key:
            extra["request"] = key
        if raw is not None:
            extra["raw"] = raw
        return Reject(source=row["source"], locator=row["meta"].get("locator", ""), reason=reason,
                      detail=f"{job.spec.name}: {detail}", stage=self.name, row_id=row.get("id"), extra=extra)

    def attempts(self, stats: Any) -> int:
        """Rows it tried to generate (made + rejected), not the source rows it passed through."""
        return stats.rows_out - self._passed + sum(stats.rejected.values())

    def report(self, state: Any = None) -> dict[str, Any]:
        """Per-job requests, tokens and dollars for the manifest's stage details."""
        jobs = {j.spec.name: {**j.ledger.to_json(), "cache": str(self.job_cache_dir(j))} for j in self.jobs}
        return {"cache": str(self.cache_dir), "jobs": jobs}

    def __getstate__(self) -> dict[str, Any]:  # an engine may ship the step to a worker: reopen the cache there
        state = dict(self.__dict__)
        state["_caches"] = {}
        return state
