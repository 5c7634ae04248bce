"""Preference pairs from a judge: N candidate answers per prompt, scored by a judge model, best vs worst.

    preference:
      from: judge
      candidates: {model: my-sft, n: 4, temperature: 1.0, endpoint: {base_url: "http://localhost:8000/v1"}}
      judge: {model: gpt-4o, scoring: rubric}      # or scoring: pairwise
      min_margin: 2

For each row (a prompt: the turns up to its last user turn, with its images):
1. the candidate template (templates/preference/candidate.j2 by default) renders the request, and the
   candidate model answers it `n` times (sample i is sent with seed + i; the seed defaults to the recipe
   seed); answers a synthesis check refuses (refusal, truncated, empty) are left out and counted;
   identical answers are judged once; `include_reference` adds the row's own answer as a candidate;
2. the judge template renders one request per distinct candidate (rubric: a score on min_score..max_score,
   the mean of the judge's `n` samples) or per ordered pair of candidates (pairwise: both orders, a
   candidate's score is its share of wins, a tie half a win);
3. chosen = the best, rejected = the worst (ties broken by a draw seeded by the recipe seed and row id),
   kept only when best - worst >= `min_margin`.
A row that cannot pair becomes a reject with its reason, counted, never dropped: `task_not_paired`,
`no_prompt`, `too_few_candidates`, `margin_too_small` (with the scores), `judge_unparseable` (with
an excerpt of what the judge wrote), `judge_<check>` (the judge refused or was cut), or the request's own
failure (`budget_exhausted`, `batch_pending`, `request_failed`, ...; a rerun sends only what is missing).

Requests run through the synthesis machinery unchanged (vlmdata/synth: client, per-request SQLite cache,
Batch API ledger, `max_cost_usd`, secrets redaction), as two jobs named `preference.candidates` and
`preference.judge`. Candidates are asked first, for the whole batch at once, then the judge.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from vlmdata.rows import Reject, RowError
from vlmdata.schema import PREFERENCE_TASK, message, preference_problems, preference_row_id, text_part
from vlmdata.steps.base import MapStep, Row
from vlmdata.steps.preference import PreferenceSpec
from vlmdata.synth.cache import ResponseCache
from vlmdata.synth.cost import Ledger, price_for
from vlmdata.synth.judge_parse import excerpt, parse_score, parse_verdict
from vlmdata.synth.judge_spec import CANDIDATES, JUDGE, candidate_chat, preference_jobs
from vlmdata.synth.parse import check
from vlmdata.synth.prompt import Request, build_request, render_chat, template_context
from vlmdata.synth.run import JobState, Outcome, run_job
from vlmdata.templates_lib import Template, load_template

log = logging.getLogger("vlmdata.synth")


def prompt_of(row: Row) -> tuple[list[dict[str, Any]], str | None] | None:
    """(the prompt turns, the row's own answer or None): the turns before the last assistant turn, or all
    of them when the row ends with its user turn; None when there is no user turn to answer."""
    messages = row.get("messages") or []
    if messages and messages[-1]["role"] == "assistant":
        prompt, answer = messages[:-1], _text(messages[-1])
    else:
        prompt, answer = messages, None
    if not prompt or prompt[-1]["role"] != "user" or not _text(prompt[-1]).strip():
        return None
    return prompt, answer


def _text(turn: dict[str, Any]) -> str:
    return "".join(p.get("text") or "" for p in turn["content"] if p["type"] == "text")


def judge_context(row: Row, prompt: list[dict[str, Any]], reference: str | None) -> dict[str, Any]:
    """What both templates see: the row's context and fields, the question, earlier turns, the reference."""
    ctx = template_context(context=row.get("context") or {}, fields=row.get("fields") or {},
                           n_images=len(row.get("images") or []))
    return {**ctx, "question": _text(prompt[-1]), "history": [{"role": m["role"], "text": _text(m)} for m in prompt[:-1]],
            "reference": reference}


def _same(text: str) -> str:
    return " ".join(text.split()).casefold()


@dataclass
class Candidate:
    text: str
    origin: str  # "sample:i" or "reference"
    request: str | None = None  # cache key of the answer
    score: float = 0.0
    judged: list[str] = field(default_factory=list)  # cache keys of its judge requests


@dataclass
class Pending:
    """One row on its way: the prompt, its candidate requests, then its candidates and judge requests."""

    row: Row
    prompt: list[dict[str, Any]]
    reference: str | None
    ctx: dict[str, Any]
    asks: list[Request]
    candidates: list[Candidate] = field(default_factory=list)
    judge: list[tuple[Request, tuple[int, ...]]] = field(default_factory=list)  # request, candidates it rates
    cost_usd: float = 0.0


class PreferenceJudgeStep(MapStep):
    """`preference: from: judge` (see the module docstring). A map step: a prompt's pair needs only its
    own candidates. It runs on the driver: one cache, one rate limit and one budget for the build."""

    name: ClassVar[str] = "preference"
    runs_on_driver: ClassVar[bool] = True

    def __init__(self, *, spec: PreferenceSpec, seed: int, base_dir: Path, cache_dir: Path) -> None:
        assert spec.candidates is not None and spec.judge is not None  # PreferenceSpec validated from: judge
        self.spec = spec
        self.seed = seed
        self.cache_dir = cache_dir
        self.history = spec.candidates.history
        self.scoring = spec.judge.scoring
        self.margin = spec.margin()
        self.low, self.high = (0.0, 1.0) if self.scoring == "pairwise" else (spec.judge.min_score, spec.judge.max_score)
        self.jobs: dict[str, JobState] = {}
        self.templates: dict[str, Template] = {}
        for i, (name, job_spec) in enumerate(preference_jobs(candidates=spec.candidates, judge=spec.judge,
                                                              seed=seed).items()):
            self.jobs[name] = JobState(spec=job_spec, index=i,
                                       ledger=Ledger(price=price_for(job_spec.model, job_spec.prices),
                                                     batch=job_spec.mode == "batch"))
            self.templates[name] = load_template(job_spec.template, base_dir=base_dir)
        self._caches: dict[Path, ResponseCache] = {}
        self._warned: set[str] = set()
        self.pairs = 0
        self.unusable: Counter[str] = Counter()  # candidate answers left out, by reason
        self.margins: list[float] = []

    # -- the two rounds ---------------------------------------------------------------------------
    def map(self, batch: list[Row]) -> Iterator[Row | Reject]:
        pending: list[Pending] = []
        for row in batch:
            try:
                pending.append(self._prepare(row))
            except RowError as e:
                yield self._reject(row, e.reason, e.detail)
        if not pending:
            return
        asked = asyncio.run(self._send(CANDIDATES, [r for p in pending for r in p.asks]))
        judging: list[Pending] = []
        for p in pending:
            outcomes = [asked[r.key] for r in p.asks]
            try:
                self._candidates(p, outcomes)
                self._judge_requests(p)
            except RowError as e:
                yield self._reject(p.row, e.reason, e.detail, extra=getattr(e, "extra", None))
                continue
            judging.append(p)
        answered = asyncio.run(self._send(JUDGE, [r for p in judging for r, _ in p.judge])) if judging else {}
        for p in judging:
            try:
                yield self._pair(p, answered)
            except RowError as e:
                yield self._reject(p.row, e.reason, e.detail, extra=getattr(e, "extra", None))
        for name, job in self.jobs.items():
            if job.ledger.budget_hit and name not in self._warned:
                self._warned.add(name)
                log.warning("%s: max_cost_usd=%s reached; no new requests are sent, the rows left are rejected as "
                            "budget_exhausted", name, job.spec.max_cost_usd)

    def _prepare(self, row: Row) -> Pending:
        if self.spec.tasks is not None and row["task"] not in self.spec.tasks:
            raise RowError("task_not_paired", f"task '{row['task']}' is not in preference.tasks")
        found = prompt_of(row)
        if found is None:
            raise RowError("no_prompt", "the row has no user turn with text for the candidates to answer")
        prompt, reference = found
        ctx = judge_context(row, prompt, reference)
        job = self.jobs[CANDIDATES].spec
        chat = candidate_chat(self.templates[CANDIDATES], ctx, history=self.history)
        asks = [build_request(spec=job, chat=chat, images=row["images"], image_hashes=row["image_hashes"],
                              image_sizes=row["image_sizes"], sample=i, base_url=job.base_url()) for i in range(job.n)]
        return Pending(row=row, prompt=prompt, reference=reference, ctx=ctx, asks=asks)

    def _candidates(self, p: Pending, outcomes: list[Outcome]) -> None:
        """The distinct usable answers; a failed request rejects the row (a rerun asks again, paying only it)."""
        for i, got in enumerate(outcomes):
            p.cost_usd += got.cost_usd
            if got.failure is not None:
                raise _error(got.failure.reason, f"{CANDIDATES}: sample {i}: {got.failure.detail}",
                             request=p.asks[i].key)
        reasons: Counter[str] = Counter()
        seen: set[str] = set()
        offered = [(got.response.text.strip(), f"sample:{i}", p.asks[i].key, got.response)
                   for i, got in enumerate(outcomes) if got.response is not None]
        if self.spec.include_reference and p.reference:
            offered.append((p.reference.strip(), "reference", None, None))
        for text, origin, key, response in offered:
            if response is not None:
                try:
                    check(response)
                except RowError as e:
                    reasons[e.reason] += 1
                    continue
            if _same(text) in seen:
                continue
            seen.add(_same(text))
            p.candidates.append(Candidate(text=text, origin=origin, request=key))
        self.unusable.update(reasons)
        if len(p.candidates) < 2:
            left = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "none unusable"
            raise RowError("too_few_candidates", f"{len(p.candidates)} distinct usable answer(s) of {len(offered)} "
                                                 f"({left}); a pair needs two")

    def _judge_requests(self, p: Pending) -> None:
        job = self.jobs[JUDGE].spec
        template = self.templates[JUDGE]
        if self.scoring == "rubric":
            rated: list[tuple[int, ...]] = [(i,) for i in range(len(p.candidates))]
        else:
            rated = list(itertools.permutations(range(len(p.candidates)), 2))
        for which in rated:
            if self.scoring == "rubric":
                ctx = {**p.ctx, "response": p.candidates[which[0]].text}
            else:
                ctx = {**p.ctx, "response_a": p.candidates[which[0]].text, "response_b": p.candidates[which[1]].text}
            chat = render_chat(template, ctx)
            for sample in range(job.n):
                request = build_request(spec=job, chat=chat, images=p.row["images"], image_hashes=p.row["image_hashes"],
                                        image_sizes=p.row["image_sizes"], sample=sample, base_url=job.base_url())
                p.judge.append((request, which))

    def _pair(self, p: Pending, answered: dict[str, Outcome]) -> Row:
        votes: dict[int, list[float]] = {i: [] for i in range(len(p.candidates))}
        for request, which in p.judge:
            got = answered[request.key]
            p.cost_usd += got.cost_usd
            if got.failure is not None:
                raise _error(got.failure.reason, f"{JUDGE}: {got.failure.detail}", request=request.key)
            assert got.response is not None
            text = got.response.text
            try:
                check(got.response)
            except RowError as e:
                raise _error(f"judge_{e.reason}", f"{JUDGE}: {e.detail}", request=request.key, raw=text) from None
            try:
                if self.scoring == "rubric":
                    votes[which[0]].append(parse_score(text, low=self.low, high=self.high))
                else:
                    verdict = parse_verdict(text)
                    a, b = which
                    votes[a].append({"A": 1.0, "B": 0.0, "C": 0.5}[verdict])
                    votes[b].append({"A": 0.0, "B": 1.0, "C": 0.5}[verdict])
            except RowError as e:
                raise _error(e.reason, f"{JUDGE}: candidate {which}: {e.detail}", request=request.key,
                             raw=excerpt(text)) from None
            for i in which:
                p.candidates[i].judged.append(request.key)
        for i, c in enumerate(p.candidates):
            c.score = sum(votes[i]) / len(votes[i])
        rng = random.Random(f"{self.seed}:preference-judge:{p.row['id']}")
        scores = [c.score for c in p.candidates]
        best = rng.choice([i for i, s in enumerate(scores) if s == max(scores)])
        worst = rng.choice([i for i, s in enumerate(scores) if s == min(scores)])
        margin = scores[best] - scores[worst]
        shown = ", ".join(f"{c.origin}={c.score:g}" for c in p.candidates)
        if margin <= 0 or margin < self.margin:
            raise RowError("margin_too_small", f"best - worst = {margin:g} < min_margin {self.margin:g} (scores: {shown})")
        chosen = [message("assistant", [text_part(p.candidates[best].text)])]
        rejected = [message("assistant", [text_part(p.candidates[worst].text)])]
        row = p.row
        pair = {**row, "task": PREFERENCE_TASK, "messages": p.prompt, "chosen": chosen, "rejected": rejected}
        problems = preference_problems(pair)
        if problems:
            raise RowError("bad_pair", "; ".join(problems))
        pair["id"] = preference_row_id(image_hashes=row["image_hashes"], prompt=p.prompt, chosen=chosen,
                                       rejected=rejected)
        jobs = self.jobs
        pair["meta"] = {**(row.get("meta") or {}), "preference": {
            "from": "judge", "task": row["task"], "row": row["id"], "kind": f"judge:{self.scoring}",
            "chosen_score": scores[best], "rejected_score": scores[worst], "margin": margin,
            "candidates": [{"origin": c.origin, "score": c.score, "request": c.request} for c in p.candidates],
            "chosen_from": p.candidates[best].origin, "rejected_from": p.candidates[worst].origin,
            "candidate_model": jobs[CANDIDATES].spec.model, "judge_model": jobs[JUDGE].spec.model,
            "templates": {name: {"name": t.name, "sha256": t.sha256} for name, t in self.templates.items()},
            "cost_usd": round(p.cost_usd, 8)}}
        self.pairs += 1
        self.margins.append(margin)
        return pair

    # -- plumbing ---------------------------------------------------------------------------------
    def _cache(self, job: JobState) -> ResponseCache:
        where = self.job_cache_dir(job)
        if where not in self._caches:
            self._caches[where] = ResponseCache(directory=where)
        return self._caches[where]

    def job_cache_dir(self, job: JobState) -> Path:
        """A call's own `cache_dir` when the recipe gives one, else the build's (as synthesize jobs)."""
        return job.spec.cache_dir or self.cache_dir

    async def _send(self, name: str, requests: list[Request]) -> dict[str, Outcome]:
        job = self.jobs[name]
        if not requests:
            return {}
        outcomes = await run_job(job=job, cache=self._cache(job), requests=requests,
                                 spool=self.job_cache_dir(job) / "batches")
        return {r.key: o for r, o in zip(requests, outcomes, strict=True)}

    def _reject(self, row: Row, reason: str, detail: str, *, extra: dict[str, Any] | None = None) -> Reject:
        return Reject(source=row.get("source", ""), locator=(row.get("meta") or {}).get("locator", ""), reason=reason,
                      detail=detail, stage=self.name, row_id=row.get("id"), extra=extra)

    def report(self, state: Any = None) -> dict[str, Any]:
        """Pairs, margins, unusable candidates and each call's requests, tokens and dollars (manifest)."""
        margins = sorted(self.margins)
        return {"from": "judge", "scoring": self.scoring, "min_margin": self.margin, "pairs": self.pairs,
                "by_kind": {f"judge:{self.scoring}": self.pairs} if self.pairs else {},
                "margin": {"mean": round(sum(margins) / len(margins), 4), "min": margins[0], "max": margins[-1]}
                if margins else {},
                "unusable_candidates": dict(sorted(self.unusable.items())),
                "calls": {name: {**job.ledger.to_json(), "model": job.spec.model, "mode": job.spec.mode,
                                 "cache": str(self.job_cache_dir(job))} for name, job in self.jobs.items()}}

    def __getstate__(self) -> dict[str, Any]:  # an engine may ship the step: reopen the cache there
        state = dict(self.__dict__)
        state["_caches"] = {}
        return state


class _JudgeError(RowError):
    """A RowError that carries what the reject keeps besides its detail (request key, judge text)."""

    def __init__(self, reason: str, detail: str, extra: dict[str, Any]) -> None:
        super().__init__(reason, detail)
        self.extra = extra


def _error(reason: str, detail: str, *, request: str, raw: str | None = None) -> _JudgeError:
    extra: dict[str, Any] = {"request": request}
    if raw is not None:
        extra["raw"] = raw
    return _JudgeError(reason, detail, extra)
