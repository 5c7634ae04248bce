"""One job over one batch of rows: cache lookup, budget admission, sending, accounting.

Admission is decided up front for the whole batch from cost estimates (cached answers count at their
real usage), so which rows fall to `budget_exhausted` does not depend on network timing, and with
`max_tokens` set the cap can never be overshot. Every answer is committed to the cache as it arrives.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from vlmdata.synth.batch import run_batch
from vlmdata.synth.cache import Response, ResponseCache
from vlmdata.synth.client import Failure, SynthClient
from vlmdata.synth.cost import DEFAULT_COMPLETION_TOKENS, Ledger, estimate_prompt_tokens
from vlmdata.synth.prompt import Request
from vlmdata.synth.spec import SynthesizeSpec


@dataclass
class Outcome:
    response: Response | None
    failure: Failure | None
    cached: bool
    cost_usd: float = 0.0


@dataclass
class JobState:
    """What persists across batches for one job."""

    spec: SynthesizeSpec
    index: int
    ledger: Ledger
    preflighted: bool = False


def estimate(spec: SynthesizeSpec, request: Request) -> tuple[int, int]:
    prompt = estimate_prompt_tokens(request.body["messages"], image_sizes=list(request.image_sizes),
                                    detail=spec.image_detail)
    return prompt, spec.max_tokens or DEFAULT_COMPLETION_TOKENS


async def run_job(*, job: JobState, cache: ResponseCache, requests: list[Request], spool: Path) -> list[Outcome]:
    """Outcomes in the order of `requests` (duplicates in one batch are sent once)."""
    spec, ledger = job.spec, job.ledger
    outcomes: dict[str, Outcome] = {}
    to_send: dict[str, Request] = {}
    planned = ledger.cost_usd
    for r in requests:
        if r.key in outcomes or r.key in to_send:
            continue
        hit = cache.get(r.key)
        if hit is not None:
            usd = ledger.add(prompt_tokens=hit.prompt_tokens, completion_tokens=hit.completion_tokens, cached=True)
            planned += usd
            outcomes[r.key] = Outcome(hit, None, cached=True, cost_usd=usd)
            continue
        est = ledger.cost(*estimate(spec, r))
        if spec.max_cost_usd is not None and planned + est > spec.max_cost_usd:
            ledger.budget_hit = True
            outcomes[r.key] = Outcome(None, Failure("budget_exhausted", f"max_cost_usd={spec.max_cost_usd} reached "
                                                    f"(spent ${ledger.cost_usd:.4f}); request not sent"), cached=False)
            continue
        planned += est
        to_send[r.key] = r
    if to_send:
        async with SynthClient(spec=spec, job_index=job.index) as client:
            if not job.preflighted:
                await client.preflight()
                job.preflighted = True
            if spec.mode == "batch":
                failed = await run_batch(client=client, cache=cache, requests=list(to_send.values()), job=spec.name, spool=spool)
                for r in to_send.values():
                    got = failed.get(r.key) or cache.get(r.key)
                    outcomes[r.key] = _account(ledger, got)
            else:
                async def one(r: Request) -> None:
                    got = await client.complete(r, tokens=sum(estimate(spec, r)),
                                                persist=lambda resp, key=r.key: cache.put(key, resp, job=spec.name,
                                                                                          model=spec.model))
                    outcomes[r.key] = _account(ledger, got)

                await asyncio.gather(*(one(r) for r in to_send.values()))
    return [outcomes[r.key] for r in requests]


def _account(ledger: Ledger, got: Response | Failure | None) -> Outcome:
    if got is None:
        got = Failure("batch_failed", "no answer recorded")
    if isinstance(got, Failure):
        ledger.failures[got.reason] = ledger.failures.get(got.reason, 0) + 1
        return Outcome(None, got, cached=False)
    usd = ledger.add(prompt_tokens=got.prompt_tokens, completion_tokens=got.completion_tokens, cached=False)
    return Outcome(got, None, cached=False, cost_usd=usd)
