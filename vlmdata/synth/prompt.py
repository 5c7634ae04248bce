"""Template + row → the chat request an LLM sees, and the request's cache key.

A synthesis template is the one-file block format of `templates_lib` with few-shot pairs:

    {% block system %}You are an AI visual assistant ...{% endblock %}
    {% block example_1_user %}<captions and boxes of an example image>{% endblock %}
    {% block example_1_assistant %}<the reference output for it>{% endblock %}
    {% block user %}{% for c in captions %}{{ c }}
    {% endfor %}{% endblock %}

→ [system, example_1_user, example_1_assistant, ..., user (+ the row's images as data URLs)].
The key is the sha256 of the endpoint (base_url only, never credentials), the model, the messages
with every image replaced by its pixel hash, the generation params and the sample index, so any
change to a template changes exactly the requests that template renders.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from vlmdata.redact import safe_url
from vlmdata.rows import RowError
from vlmdata.synth.parse import QA_SCHEMA
from vlmdata.synth.spec import SynthesizeSpec
from vlmdata.templates_lib import Template

EXAMPLE = re.compile(r"example_(\d+)_(user|assistant)")


def template_context(*, context: dict[str, Any], fields: dict[str, Any], n_images: int) -> dict[str, Any]:
    """What a template sees: the source's context, then the canonical label fields (fields win)."""
    answers = [str(a) for a in fields.get("answers", []) or [] if a is not None]
    return {**context, **fields, "answers": answers, "answer": answers[0] if answers else None, "n_images": n_images}


def render_chat(template: Template, ctx: dict[str, Any]) -> list[dict[str, str]]:
    """The template's turns as text-only chat messages (images are attached later)."""
    from jinja2 import TemplateError

    try:
        blocks = template.render(ctx)
    except TemplateError as e:
        raise RowError("template_error", f"{template.name}: {type(e).__name__}: {e}") from None
    if not blocks.get("user"):
        raise RowError("template_error", f"{template.name} rendered an empty user turn")
    examples: dict[int, dict[str, str]] = {}
    for name, text in blocks.items():
        m = EXAMPLE.fullmatch(name)
        if m:
            examples.setdefault(int(m.group(1)), {})[m.group(2)] = text
    msgs = [{"role": "system", "content": blocks["system"]}] if blocks.get("system") else []
    for i in sorted(examples):
        pair = examples[i]
        if "user" not in pair or "assistant" not in pair:
            raise RowError("template_error", f"{template.name}: example_{i} needs both _user and _assistant blocks")
        msgs += [{"role": "user", "content": pair["user"]}, {"role": "assistant", "content": pair["assistant"]}]
    msgs.append({"role": "user", "content": blocks["user"]})
    return msgs


def media_type(data: bytes) -> str:
    if data.startswith(b"\x89PNG"):
        return "image/png"
    if data.startswith(b"\xff\xd8"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data.startswith(b"GIF8"):
        return "image/gif"
    return "image/png"


@dataclass(frozen=True)
class Request:
    """One request to send (or find in the cache); `body` is the exact chat.completions payload."""

    key: str
    body: dict[str, Any]
    image_sizes: tuple[tuple[int, int], ...]
    sample: int


def build_request(*, spec: SynthesizeSpec, chat: list[dict[str, str]], images: list[bytes],
                  image_hashes: list[str], image_sizes: list[tuple[int, int]], sample: int,
                  base_url: str) -> Request:
    """Attach images to the query turn (when `images: data_url`), add params, and hash the lot."""
    messages: list[dict[str, Any]] = [dict(m) for m in chat]
    keyed: list[dict[str, Any]] = [dict(m) for m in chat]
    sizes: tuple[tuple[int, int], ...] = ()
    if spec.images == "data_url" and images:
        text = messages[-1]["content"]
        parts = [{"type": "image_url", "image_url": {"url": f"data:{media_type(b)};base64,{base64.b64encode(b).decode()}",
                                                     "detail": spec.image_detail}} for b in images]
        key_parts = [{"type": "image_url", "image_url": {"url": f"sha256:{h}", "detail": spec.image_detail}}
                     for h in image_hashes]
        messages[-1] = {"role": "user", "content": [*parts, {"type": "text", "text": text}]}
        keyed[-1] = {"role": "user", "content": [*key_parts, {"type": "text", "text": text}]}
        sizes = tuple(tuple(s) for s in image_sizes)  # type: ignore[misc]
    params = generation_params(spec, sample)
    identity = {"base_url": safe_url(base_url), "model": spec.model, "messages": keyed, "params": params, "sample": sample}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return Request(key=key, body={"model": spec.model, "messages": messages, **params}, image_sizes=sizes, sample=sample)


def generation_params(spec: SynthesizeSpec, sample: int) -> dict[str, Any]:
    """Sampling params of one request; with a seed, sample i uses seed + i so n samples differ."""
    params: dict[str, Any] = {}
    for name in ("temperature", "top_p", "max_tokens"):
        value = getattr(spec, name)
        if value is not None:
            params[name] = value
    if spec.seed is not None:
        params["seed"] = spec.seed + sample
    if spec.parse == "json" and spec.structured_outputs:
        params["response_format"] = {"type": "json_schema", "json_schema": {"name": "qa_pairs", "strict": True,
                                                                            "schema": QA_SCHEMA}}
    return params
