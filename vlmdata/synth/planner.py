"""`vlmdata plan`: what the synthesis jobs of a recipe will send and cost, before anything is sent.

Reads the sources' records (labels and context only: no image is decoded, no request is made, no key
is needed), renders each job's prompts, and counts requests (rows × n) and estimated tokens (see
cost.py: chars/4 per text, a fixed 765 tokens per attached image since sizes are not read). Rows a
later build rejects at load or instruct are still counted, so the figures are an upper bound. With
`images: none` the request keys are exact, so answers already in the cache are reported as free.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vlmdata.recipe import LoadedRecipe
from vlmdata.rows import Record, RowError
from vlmdata.sources import read_source
from vlmdata.synth.cache import CACHE_FILE, ResponseCache
from vlmdata.synth.cost import UNKNOWN_IMAGE_TOKENS, Ledger, image_tokens, price_for
from vlmdata.synth.prompt import build_request, render_chat, template_context
from vlmdata.synth.run import estimate
from vlmdata.templates_lib import load_template


@dataclass
class JobPlan:
    name: str
    model: str
    mode: str
    rows: int = 0
    requests: int = 0
    cached: int = 0
    template_errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    examples: list[list[dict[str, Any]]] = field(default_factory=list)


def plan_synthesis(loaded: LoadedRecipe, *, show: int, limit: int | None, cache_dir: Path | None) -> list[JobPlan]:
    recipe = loaded.recipe
    default_dir = cache_dir or recipe.output_path().parent / ".vlmdata-cache"
    caches: dict[Path, ResponseCache | None] = {}
    by_name = {s.name: s for s in recipe.sources}
    plans = []
    for spec in recipe.synthesize:
        where = spec.cache_dir or default_dir  # as SynthesizeStep.job_cache_dir
        if where not in caches:
            caches[where] = ResponseCache(directory=where) if (where / CACHE_FILE).is_file() else None
        cache = caches[where]
        template = load_template(spec.template, base_dir=loaded.path.parent)
        price = price_for(spec.model, spec.prices)
        ledger = Ledger(price=price, batch=spec.mode == "batch")
        jp = JobPlan(name=spec.name, model=spec.model, mode=spec.mode)
        for src in spec.from_:
            for rec in read_source(by_name[src], limit=limit):
                if not isinstance(rec, Record):
                    continue
                jp.rows += 1
                try:
                    chat = render_chat(template, template_context(context=rec.context, fields=rec.fields,
                                                                  n_images=len(rec.images)))
                except RowError:
                    jp.template_errors += 1
                    continue
                if len(jp.examples) < show:
                    jp.examples.append(_shown(chat, len(rec.images) if spec.images == "data_url" else 0))
                for sample in range(spec.n):
                    jp.requests += 1
                    req = build_request(spec=spec, chat=chat, images=[], image_hashes=[], image_sizes=[],
                                        sample=sample, base_url=spec.base_url())
                    if spec.images == "none" and cache is not None and cache.get(req.key) is not None:
                        jp.cached += 1
                        continue
                    prompt, completion = estimate(spec, req)
                    if spec.images == "data_url":
                        prompt += len(rec.images) * image_tokens(None, spec.image_detail)
                    jp.prompt_tokens += prompt
                    jp.completion_tokens += completion
        jp.cost_usd = ledger.cost(jp.prompt_tokens, jp.completion_tokens) if price is not None else None
        plans.append(jp)
    for opened in caches.values():
        if opened is not None:
            opened.close()
    return plans


def _shown(chat: list[dict[str, str]], n_images: int) -> list[dict[str, Any]]:
    shown = [dict(m) for m in chat]
    if n_images:
        shown[-1]["content"] = "<image> " * n_images + shown[-1]["content"]
    return shown


def describe(plans: list[JobPlan]) -> list[str]:
    lines = [f"estimates: text = chars/4 (+4 per message); image = {UNKNOWN_IMAGE_TOKENS} tokens (85 at detail: low); "
             f"completion = "
             f"max_tokens (or 400)"]
    total = 0.0
    for jp in plans:
        cost = "unknown price (add `prices:` to the job)" if jp.cost_usd is None else f"~${jp.cost_usd:.4f}"
        total += jp.cost_usd or 0.0
        lines.append(f"job {jp.name}: model {jp.model} ({jp.mode}), {jp.rows} rows -> {jp.requests} requests "
                     f"({jp.cached} cached), ~{jp.prompt_tokens} prompt + ~{jp.completion_tokens} completion tokens "
                     f"to send, {cost}")
        if jp.template_errors:
            lines.append(f"  {jp.template_errors} rows fail to render the template (they will be rejected)")
        for i, chat in enumerate(jp.examples, 1):
            lines.append(f"  --- prompt {i} ---")
            lines += [f"  [{m['role']}] " + m["content"].replace("\n", "\n      ") for m in chat]
    lines.append(f"total estimated cost: ~${total:.4f} (no request was sent)")
    return lines
