"""The two calls of `preference: from: judge`: the candidate model and the judge model.

    preference:
      from: judge
      min_margin: 2                     # best score - worst score needed for a pair (1-10 rubric)
      candidates:                       # N answers per prompt, e.g. a vLLM server running your SFT model
        model: my-sft
        n: 4
        temperature: 1.0                # seed: each sample i sends seed + i (default: the recipe seed)
        endpoint: {base_url: "http://localhost:8000/v1", api_key_env: VLLM_API_KEY}
      judge:                            # scores each distinct candidate through a Jinja2 rubric template
        model: gpt-4o
        max_cost_usd: 5

Each call takes the request options of a `synthesize:` job (endpoint, concurrency, rpm/tpm, retries,
`mode: batch`, `max_cost_usd`, `prices`, `cache_dir`, ...) from the same field definitions, and becomes a
real `SynthesizeSpec` (`synth_spec`), so the synthesis client, its per-request SQLite cache, the Batch
API ledger, the budget and the secrets redaction run unchanged. Keys only a synthesize job has (`from`,
`task`, `parse`, `grounding`, ...) are unknown keys here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from vlmdata.config.paths import TemplateRef
from vlmdata.synth.prompt import render_chat
from vlmdata.synth.spec import SynthesizeSpec
from vlmdata.templates_lib import Template, check_template

# request options shared with a synthesize job (their types, defaults and bounds stay defined there)
REQUEST_FIELDS = ("model", "image_detail", "top_p", "max_tokens", "mode", "concurrency", "rpm", "tpm",
                  "timeout_s", "max_retry_after_s", "max_retries", "max_cost_usd", "prices", "endpoint", "poll_s",
                  "batch_wait_s", "batch_failures", "cache_dir")
CANDIDATE_TEMPLATE = "preference/candidate"
JUDGE_TEMPLATES = {"rubric": "preference/judge_rubric", "pairwise": "preference/judge_pairwise"}

_RequestOptions: type[BaseModel] = create_model(  # type: ignore[call-overload]
    "_RequestOptions", __config__=ConfigDict(extra="forbid"),
    **{name: (SynthesizeSpec.model_fields[name].annotation, SynthesizeSpec.model_fields[name])
       for name in REQUEST_FIELDS})


class PreferenceCall(SynthesizeSpec):
    """A SynthesizeSpec that names itself by its YAML path (`preference.judge`) in messages."""

    def where(self, index: int) -> str:
        return f"{self.name} ('{self.model}')"


class _Call(_RequestOptions):  # type: ignore[misc, valid-type]
    model_config = ConfigDict(extra="forbid")
    template: TemplateRef | None = None  # None: the shipped default (see `template_ref`)
    images: Literal["none", "data_url"] = "data_url"  # both models must see the image
    seed: int | None = None  # None: the recipe seed (every random choice takes one)

    @field_validator("template")
    @classmethod
    def _template_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        problem = check_template(value, base_dir=Path((info.context or {}).get("base_dir", ".")))
        if problem:
            raise ValueError(problem)
        return value

    def synth_spec(self, *, name: str, template: str, n: int, temperature: float | None, seed: int) -> PreferenceCall:
        """The synthesize job this call runs as (validated already, so constructed, not re-validated)."""
        values: dict[str, Any] = {k: getattr(self, k) for k in REQUEST_FIELDS}
        values.update(name=name, from_=["preference"], template=template, task="preference", parse="text", n=n,
                      images=self.images, temperature=temperature,
                      seed=self.seed if self.seed is not None else seed)
        return PreferenceCall.model_construct(**values)


class CandidateCall(_Call):
    """Who answers the prompts: `n` samples per prompt (sample i is sent with seed + i)."""

    n: int = Field(default=4, ge=2, le=64)
    temperature: float | None = Field(default=1.0, ge=0, le=2)  # diversity is the point of N candidates
    # a multi-turn prompt's earlier turns: sent as chat turns before the rendered one (what an SFT model was
    # trained on), or left to the template (its `history` variable)
    history: Literal["turns", "template"] = "turns"

    @model_validator(mode="after")
    def _diverse(self) -> CandidateCall:
        if self.temperature == 0:
            raise ValueError(f"temperature: 0 makes the {self.n} candidates one answer (nothing to prefer); "
                             "sample them, e.g. temperature: 1.0")
        return self

    def template_ref(self) -> str:
        return self.template or CANDIDATE_TEMPLATE


class JudgeCall(_Call):
    """Who scores them. `scoring: rubric` asks for a 1-10 score per candidate (the mean of `n` judge
    samples); `scoring: pairwise` compares candidates two at a time, both orders (position bias cancels),
    and a candidate's score is its share of wins."""

    scoring: Literal["rubric", "pairwise"] = "rubric"
    n: int = Field(default=1, ge=1, le=16)
    temperature: float | None = Field(default=0.0, ge=0, le=2)
    min_score: float = 1
    max_score: float = 10

    @model_validator(mode="after")
    def _scale(self) -> JudgeCall:
        if self.max_score <= self.min_score:
            raise ValueError(f"max_score ({self.max_score:g}) must be above min_score ({self.min_score:g})")
        if self.n > 1 and self.temperature == 0:
            raise ValueError(f"n: {self.n} judge samples at temperature 0 are one answer {self.n} times (paid "
                             f"{self.n} times); set judge.temperature above 0 to average, or n: 1")
        return self

    def template_ref(self) -> str:
        return self.template or JUDGE_TEMPLATES[self.scoring]


CANDIDATES, JUDGE = "preference.candidates", "preference.judge"  # job names: messages, cache rows, manifest


def preference_jobs(*, candidates: CandidateCall, judge: JudgeCall, seed: int) -> dict[str, PreferenceCall]:
    """The two synthesize jobs `from: judge` runs, by name (the step, the planner and the redactor use these)."""
    return {CANDIDATES: candidates.synth_spec(name=CANDIDATES, template=candidates.template_ref(), n=candidates.n,
                                              temperature=candidates.temperature, seed=seed),
            JUDGE: judge.synth_spec(name=JUDGE, template=judge.template_ref(), n=judge.n,
                                    temperature=judge.temperature, seed=seed)}


def candidate_chat(template: Template, ctx: dict[str, Any], *, history: str) -> list[dict[str, str]]:
    """The candidates' chat for one prompt: the rendered template, with a multi-turn prompt's earlier
    turns (`ctx["history"]`) as chat turns before the rendered user turn when `history` is "turns"."""
    chat = render_chat(template, ctx)
    if history == "turns" and ctx.get("history"):
        chat = chat[:-1] + [{"role": t["role"], "content": t["text"]} for t in ctx["history"]] + chat[-1:]
    return chat
