"""The recipe's `synthesize:` jobs: one LLM pass over the rows of some sources.

    synthesize:
      - {name: conv, from: [coco], template: llava/conversation, model: gpt-4o-mini, task: conversation,
         parse: qa_blocks, n: 1, concurrency: 64, max_cost_usd: 5,
         endpoint: {base_url: "${OPENAI_BASE_URL:-https://api.openai.com/v1}", api_key_env: OPENAI_API_KEY}}

The key is only ever named (`api_key_env`), never written in the recipe, so no resolved recipe,
manifest or cache can hold it. Checks that involve other sections (`from` names a source, a price
exists for `max_cost_usd`) live in `synth_cross_checks`, run with the recipe's other cross checks.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from vlmdata.config.errors import Problem, did_you_mean
from vlmdata.config.path_types import OutputPath
from vlmdata.config.paths import TemplateRef
from vlmdata.redact import safe_url
from vlmdata.synth.cost import Prices, price_for
from vlmdata.templates_lib import check_template

DEFAULT_BASE_URL = "https://api.openai.com/v1"


class EndpointSpec(BaseModel):
    """Where requests go. `base_url` None means $OPENAI_BASE_URL, else OpenAI's own API."""

    model_config = ConfigDict(extra="forbid")
    base_url: str | None = None
    api_key_env: str = Field(default="OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")

    @field_validator("base_url")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got '{safe_url(value)}'")
        return value.rstrip("/") if value else value


class SynthesizeSpec(BaseModel):
    """One synthesis job. Produced rows get `task`; the source rows stay unless `keep_source_rows` is
    false for every job reading their source."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=128)
    from_: list[str] = Field(alias="from", min_length=1)
    template: TemplateRef
    model: str = Field(min_length=1)
    task: str = Field(min_length=1)
    images: Literal["none", "data_url"] = "none"
    image_detail: Literal["auto", "low", "high"] = "auto"
    n: int = Field(default=1, ge=1, le=64)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    parse: Literal["qa_blocks", "json", "text"] = "qa_blocks"
    prompts: list[str] | None = Field(default=None, min_length=1)  # user turn of `text` rows
    structured_outputs: bool = True  # `json`: send a JSON-schema response_format
    grounding: bool = False  # reject answers whose counts contradict the source's boxes, or that misquote a page
    keep_source_rows: bool = True
    mode: Literal["online", "batch"] = "online"
    concurrency: int = Field(default=16, ge=1, le=4096)
    rpm: int | None = Field(default=None, ge=1)
    tpm: int | None = Field(default=None, ge=1)
    timeout_s: float = Field(default=120.0, gt=0, le=86400)  # deadline for a whole request, body included
    max_retry_after_s: float = Field(default=120.0, ge=0, le=86400)  # cap on a server's Retry-After
    max_retries: int = Field(default=5, ge=0, le=20)
    max_cost_usd: float | None = Field(default=None, gt=0)
    prices: Prices | None = None
    endpoint: EndpointSpec = Field(default_factory=EndpointSpec)
    poll_s: float = Field(default=30.0, gt=0)  # batch mode: seconds between status polls
    batch_wait_s: float | None = Field(default=None, ge=0)  # batch mode: give up waiting (rerun attaches)
    batch_failures: Literal["online", "reject"] = "online"
    cache_dir: OutputPath | None = None

    @field_validator("template")
    @classmethod
    def _template_exists(cls, value: str, info: ValidationInfo) -> str:
        base = Path((info.context or {}).get("base_dir", "."))
        problem = check_template(value, base_dir=base)
        if problem:
            raise ValueError(problem)
        return value

    def where(self, index: int) -> str:
        """How messages name this job (its YAML path); a preference call names itself differently."""
        return f"synthesize[{index}] ('{self.name}')"

    def base_url(self) -> str:
        return (self.endpoint.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def synth_cross_checks(*, jobs: list[SynthesizeSpec], source_names: list[str]) -> list[Problem]:
    """`from` names existing sources, job names are unique, a budget has a price to count against."""
    problems: list[Problem] = []
    names = source_names
    seen: set[str] = set()
    for i, job in enumerate(jobs):
        if job.name in seen:
            problems.append(Problem(f"synthesize[{i}].name", f"duplicate job name '{job.name}'"))
        seen.add(job.name)
        for j, src in enumerate(job.from_):
            if src not in names:
                problems.append(Problem(f"synthesize[{i}].from[{j}]",
                                        f"unknown source '{src}'{did_you_mean(src, names)} (sources: {', '.join(names)})"))
        if job.max_cost_usd is not None and price_for(job.model, job.prices) is None:
            problems.append(Problem(f"synthesize[{i}].max_cost_usd",
                                    f"no price known for model '{job.model}': add `prices: {{input_per_mtok: ..., "
                                    f"output_per_mtok: ...}}` to the job"))
        if job.parse == "json" and job.prompts is not None:
            problems.append(Problem(f"synthesize[{i}].prompts", "only used with parse: text"))
    return problems
