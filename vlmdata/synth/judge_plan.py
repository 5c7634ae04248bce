"""`vlmdata plan` for `preference: from: judge`: its two jobs' requests, tokens and cost, before anything is sent.

Counted per source row that pairs (its task in `preference.tasks`, or every row): `candidates.n` candidate
requests, then, for k = n (+1 with `include_reference`) candidates, k × `judge.n` judge requests (rubric) or
k × (k - 1) × `judge.n` (pairwise, both orders). The candidate prompt is the row's question (or its last
user turn; "Describe the image." for a caption row, whose instruction is drawn at build time); each
judged answer is costed at the candidates' `max_tokens` (or the 400-token default). Identical candidates
are judged once and cached answers are free at build time, so the figures are an upper bound — except
that rows a synthesize job makes are paired too and are not counted here (plan the jobs, then rerun).
"""

from __future__ import annotations

from typing import Any

from vlmdata.recipe import LoadedRecipe
from vlmdata.rows import Record, RowError
from vlmdata.sources import read_source
from vlmdata.synth.cost import CHARS_PER_TOKEN, Ledger, image_tokens, price_for
from vlmdata.synth.judge_spec import CANDIDATES, JUDGE, PreferenceCall, candidate_chat, preference_jobs
from vlmdata.synth.planner import JobPlan, _shown
from vlmdata.synth.prompt import build_request, template_context
from vlmdata.synth.run import estimate
from vlmdata.templates_lib import load_template

CAPTION_PROMPT = "Describe the image."


def _record_context(rec: Record) -> dict[str, Any]:
    """The templates' context for a source record (question = its last user turn or its question field)."""
    ctx = template_context(context=rec.context, fields=rec.fields, n_images=len(rec.images))
    question, history, reference = rec.fields.get("question") or CAPTION_PROMPT, [], ctx.get("answer")
    if rec.messages:
        texts = [(m.get("role"), "".join(p.get("text") or "" for p in m.get("content") or [] if isinstance(p, dict)))
                 for m in rec.messages]
        if texts and texts[-1][0] == "assistant":
            reference, texts = texts[-1][1], texts[:-1]
        if texts:
            question, history = texts[-1][1], [{"role": r, "text": t} for r, t in texts[:-1]]
    return {**ctx, "question": question, "history": history, "reference": reference or rec.fields.get("caption")}


def plan_judge(loaded: LoadedRecipe, *, show: int, limit: int | None) -> list[JobPlan]:
    """Two JobPlans (candidates, judge), or none when the recipe has no `preference: from: judge`."""
    recipe, spec = loaded.recipe, loaded.recipe.preference
    if spec is None or spec.candidates is None or spec.judge is None:
        return []
    base = loaded.path.parent
    jobs = preference_jobs(candidates=spec.candidates, judge=spec.judge, seed=recipe.seed)
    templates = {name: load_template(job.template, base_dir=base) for name, job in jobs.items()}
    plans = {name: JobPlan(name=name, model=job.model, mode=job.mode) for name, job in jobs.items()}
    cand, judge = jobs[CANDIDATES], jobs[JUDGE]
    k = cand.n + (1 if spec.include_reference else 0)
    judged = [("x",)] * k if spec.judge.scoring == "rubric" else [("x", "y")] * (k * (k - 1))
    answer_tokens = estimate(cand, build_request(spec=cand, chat=[{"role": "user", "content": ""}], images=[],
                                                 image_hashes=[], image_sizes=[], sample=0,
                                                 base_url=cand.base_url()))[1]
    answer = f"<candidate answer: ~{answer_tokens} tokens>"  # shown in the examples, costed at answer_tokens
    extra = (answer_tokens - len(answer) // CHARS_PER_TOKEN) * (1 if spec.judge.scoring == "rubric" else 2)
    for src in recipe.sources:
        for rec in read_source(src, limit=limit):
            if not isinstance(rec, Record) or (spec.tasks is not None and rec.task not in spec.tasks):
                continue
            ctx = _record_context(rec)
            plans[CANDIDATES].rows += 1
            plans[JUDGE].rows += 1
            _count(plans[CANDIDATES], cand, templates[CANDIDATES], [ctx], rec, show=show, samples=cand.n,
                   history=spec.candidates.history)
            variants = [{**ctx, "response": answer} if len(w) == 1 else {**ctx, "response_a": answer, "response_b": answer}
                        for w in judged]
            _count(plans[JUDGE], judge, templates[JUDGE], variants, rec, show=show, samples=judge.n,
                   extra_prompt_tokens=extra)
    for name, jp in plans.items():
        job = jobs[name]
        price = price_for(job.model, job.prices)
        jp.cost_usd = (Ledger(price=price, batch=job.mode == "batch").cost(jp.prompt_tokens, jp.completion_tokens)
                       if price is not None else None)
    return list(plans.values())


def _count(jp: JobPlan, job: PreferenceCall, template: Any, contexts: list[dict[str, Any]], rec: Record, *,
           show: int, samples: int, extra_prompt_tokens: int = 0, history: str = "template") -> None:
    if not contexts:
        return
    try:
        chat = candidate_chat(template, contexts[0], history=history)  # every variant renders the same length
    except RowError:
        jp.template_errors += 1
        return
    if len(jp.examples) < show:
        jp.examples.append(_shown(chat, len(rec.images) if job.images == "data_url" else 0))
    request = build_request(spec=job, chat=chat, images=[], image_hashes=[], image_sizes=[], sample=0,
                            base_url=job.base_url())
    prompt, completion = estimate(job, request)
    prompt += extra_prompt_tokens
    if job.images == "data_url":
        prompt += len(rec.images) * image_tokens(None, job.image_detail)
    n = len(contexts) * samples
    jp.requests += n
    jp.prompt_tokens += n * prompt
    jp.completion_tokens += n * completion
