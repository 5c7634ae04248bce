"""Config problems, reported all at once with their YAML path and a did-you-mean.

Both the recipe (vlmdata) and the training config (vlmtrain) are pydantic models. Pydantic already
collects every structural error in one pass; this module turns them into lines a user can act on:

    sources[1].fields.imgae: unknown key; did you mean 'image'?
    sources[0].kind: unknown source kind 'jsnl'; did you mean 'jsonl'? (choose from: csv, dicom, ...)

Torch-free; vlmtrain imports it too, so config errors read the same in both CLIs.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config: where (YAML path), what, and how to fix it."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """Every problem found in a config, raised together before any work starts."""

    def __init__(self, problems: Sequence[Problem], *, what: str = "config") -> None:
        self.problems = list(problems)
        self.what = what
        lines = [f"{len(self.problems)} problem(s) in {what}:"] + [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


def yaml_path(loc: Iterable[Any]) -> str:
    """('sources', 1, 'fields', 'imgae') -> 'sources[1].fields.imgae'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """' did you mean 'x'?' or '' when nothing is close."""
    close = difflib.get_close_matches(str(word), sorted(set(choices)), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _unwrap(tp: Any) -> list[Any]:
    """The concrete types an annotation may hold (Optional/Union/Annotated flattened)."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return [t for a in typing.get_args(tp) for t in _unwrap(a)]
    return [tp]


def _step(tp: Any, key: Any) -> list[Any]:
    """Types found one level below `tp` when following `key` (a field name, list index or dict key)."""
    out: list[Any] = []
    for t in _unwrap(tp):
        origin = typing.get_origin(t)
        if isinstance(t, type) and issubclass(t, BaseModel):
            field = t.model_fields.get(key) if isinstance(key, str) else None
            if field is not None:
                out.append(field.annotation)
        elif origin in (list, tuple, Sequence) and isinstance(key, int):
            out.extend(typing.get_args(t)[:1])
        elif origin is dict:
            args = typing.get_args(t)
            if len(args) == 2:
                out.append(args[1])
    return out


def _field_names_at(model: type[BaseModel], loc: Sequence[Any], data: Any) -> set[str]:
    """Field names of the model(s) that the container at `loc` may be.

    Discriminated unions put the tag into pydantic's `loc`; when a step does not match a field we try
    the raw data's value instead, so `sources[1].jsonl.fields` still resolves.
    """
    current: list[Any] = [model]
    for key in loc:
        nxt = [t for tp in current for t in _step(tp, key)]
        if not nxt:  # a union tag inside loc: stay on the union and filter by tag
            nxt = [
                t
                for tp in current
                for t in _unwrap(tp)
                if isinstance(t, type)
                and issubclass(t, BaseModel)
                and key in {getattr(t.model_fields.get(f), "default", None) for f in ("kind",)}
            ] or current
        current = nxt
    names: set[str] = set()
    for tp in current:
        for t in _unwrap(tp):
            if isinstance(t, type) and issubclass(t, BaseModel):
                names |= {f.alias or n for n, f in t.model_fields.items()}
    return names


def _display_loc(model: type[BaseModel], loc: Sequence[Any]) -> list[Any]:
    """Drop union tags (e.g. 'jsonl' in sources.1.jsonl.path) that pydantic inserts into loc."""
    out: list[Any] = []
    current: list[Any] = [model]
    for key in loc:
        nxt = [t for tp in current for t in _step(tp, key)]
        if not nxt and isinstance(key, str):
            tagged = [
                t
                for tp in current
                for t in _unwrap(tp)
                if isinstance(t, type) and issubclass(t, BaseModel) and "kind" in t.model_fields
                and t.model_fields["kind"].default == key
            ]
            if tagged:
                current = tagged
                continue
        out.append(key)
        current = nxt or current
    return out


def _tags_at(model: type[BaseModel], loc: Sequence[Any], tag: str) -> list[str]:
    """The values a union's tag field (`kind`) may take at `loc`."""
    current: list[Any] = [model]
    for key in loc:
        current = [t for tp in current for t in _step(tp, key)] or current
    out = []
    for tp in current:
        for t in _unwrap(tp):
            if isinstance(t, type) and issubclass(t, BaseModel) and tag in t.model_fields:
                default = t.model_fields[tag].default
                if isinstance(default, str):
                    out.append(default)
    return out


def problems_from_validation_error(err: ValidationError, *, model: type[BaseModel], data: Any) -> list[Problem]:
    """Turn a pydantic error into problems with YAML paths and did-you-mean hints."""
    problems: list[Problem] = []
    for e in err.errors(include_url=False):
        loc = _display_loc(model, e["loc"])
        kind = e["type"]
        if kind == "extra_forbidden":
            key = loc[-1] if loc else ""
            choices = _field_names_at(model, e["loc"][:-1], data)
            msg = f"unknown key '{key}'{did_you_mean(str(key), choices)}"
            if not did_you_mean(str(key), choices) and choices:
                msg += f" (allowed: {', '.join(sorted(choices))})"
        elif kind in ("union_tag_invalid", "literal_error") and e.get("ctx"):
            ctx = e["ctx"]
            expected = ctx.get("expected_tags") or ctx.get("expected") or ""
            options = [o.strip().strip("'\"") for o in str(expected).replace(" or ", ",").split(",") if o.strip()]
            given = ctx.get("tag", e.get("input"))
            what = "unknown value" if kind == "literal_error" else f"unknown {str(ctx.get('discriminator', 'kind')).strip(chr(39))}"
            msg = f"{what} '{given}'{did_you_mean(str(given), options)} (choose from: {', '.join(options)})"
            if kind == "union_tag_invalid":
                loc = [*loc, str(ctx.get("discriminator", "kind")).strip("'")]
        elif kind == "union_tag_not_found":
            tag = str((e.get("ctx") or {}).get("discriminator", "kind")).strip("'")
            options = _tags_at(model, e["loc"], tag)
            msg = "required key is missing" + (f" (choose from: {', '.join(options)})" if options else "")
            given = e.get("input")
            if isinstance(given, dict):
                near = did_you_mean(tag, [str(k) for k in given])
                if near:
                    msg += f"; is it misspelt as {near[len('; did you mean '):-1]}?"
            loc = [*loc, tag]
        elif kind == "missing":
            msg = "required key is missing"
        else:
            msg = e["msg"]
            if msg.startswith("Value error, "):
                msg = msg[len("Value error, ") :]
        problems.append(Problem(yaml_path(loc), msg))
    return problems
