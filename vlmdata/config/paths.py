"""Which config values are paths, read from the pydantic models' own field types (one source of truth).

A field is a path field when its type is `pathlib.Path` (bare, `Annotated`, optional, in a list or a
dict, inside a union). `extends:` uses this to re-base the relative paths written in a base file that
lives in another folder, so they keep meaning "relative to the file they were written in"; a new path
field is covered the moment its model declares it. Two refinements, both declared on the type:

- `Path | str` (a local folder or a hub id): re-based only when the re-based path exists;
- `TemplateRef` (a built-in template name or a `.j2` file): re-based only when it names a `.j2` file.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel


class TemplateMarker:
    """Metadata of `TemplateRef`: a str that is a file path only when it ends in `.j2`."""


TemplateRef = Annotated[str, TemplateMarker()]

PathKind = Literal["path", "maybe_path", "template"]
Rebase = Callable[[str, PathKind], str]


def _unwrap(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """(the bare type, the Annotated metadata), through nested Annotated."""
    meta: tuple[Any, ...] = ()
    while typing.get_origin(tp) is Annotated:
        args = typing.get_args(tp)
        tp, meta = args[0], meta + tuple(args[1:])
    return tp, meta


def _is_path(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Path)


def _arms(tp: Any) -> tuple[Any, ...] | None:
    origin = typing.get_origin(tp)
    if origin is Union or origin is types.UnionType:
        return typing.get_args(tp)
    return None


def _leaf_kind(tp: Any) -> PathKind | None:
    """The path kind of a scalar type, or None when a string of this type is not a path."""
    bare, meta = _unwrap(tp)
    if any(isinstance(m, TemplateMarker) for m in meta):
        return "template"
    if _is_path(bare):
        return "path"
    arms = _arms(bare)
    if arms:
        kinds = [_leaf_kind(a) for a in arms]
        if "path" in kinds:
            other = [_unwrap(a)[0] for a, k in zip(arms, kinds, strict=True) if k is None]
            return "maybe_path" if str in other else "path"
        return next((k for k in kinds if k), None)
    return None


def _literal_values(field_type: Any) -> tuple[Any, ...]:
    bare, _ = _unwrap(field_type)
    return typing.get_args(bare) if typing.get_origin(bare) is Literal else ()


def _pick_model(models: list[type[BaseModel]], value: dict[str, Any]) -> type[BaseModel] | None:
    """The union arm a mapping belongs to: every Literal field it sets (e.g. `kind`) must match."""
    for model in models:
        ok = True
        for name, info in model.model_fields.items():
            allowed = _literal_values(info.annotation)
            key = info.alias if info.alias and info.alias in value else name
            if allowed and key in value and value[key] not in allowed:
                ok = False
                break
            if allowed and key not in value and info.is_required():
                ok = False
                break
        if ok:
            return model
    return None


def _field_type(info: Any) -> Any:
    """A field's full type: pydantic moves the outer `Annotated` metadata into `info.metadata`."""
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """YAML key → field type (aliases and names both)."""
    out: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        out[name] = _field_type(info)
        if info.alias:
            out[info.alias] = _field_type(info)
    return out


def rebase(value: Any, tp: Any, fn: Rebase) -> Any:
    """`value` (raw YAML data) with every string in a path field of type `tp` passed through `fn`."""
    bare, meta = _unwrap(tp)
    if isinstance(value, str):
        kind = _leaf_kind(tp)
        return fn(value, kind) if kind else value
    if isinstance(value, dict):
        if isinstance(bare, type) and issubclass(bare, BaseModel):
            fields = _fields(bare)
            return {k: rebase(v, fields[k], fn) if k in fields else v for k, v in value.items()}
        origin = typing.get_origin(bare)
        if origin in (dict, typing.Dict) or (isinstance(origin, type) and issubclass(origin, dict)):  # noqa: UP006
            args = typing.get_args(bare)
            return {k: rebase(v, args[1], fn) for k, v in value.items()} if len(args) == 2 else value
        arms = _arms(bare)
        if arms:
            models = [a for a in (_unwrap(x)[0] for x in arms) if isinstance(a, type) and issubclass(a, BaseModel)]
            chosen = _pick_model(models, value)
            if chosen is not None:
                return rebase(value, chosen, fn)
            dicts = [a for a in arms if typing.get_origin(_unwrap(a)[0]) is dict]
            return rebase(value, dicts[0], fn) if dicts else value
        return value
    if isinstance(value, list):
        origin = typing.get_origin(bare)
        if origin in (list, tuple, set, frozenset):
            args = typing.get_args(bare)
            return [rebase(v, args[0], fn) for v in value] if args else value
        arms = _arms(bare)
        if arms:
            lists = [a for a in arms if typing.get_origin(_unwrap(a)[0]) in (list, tuple)]
            return rebase(value, lists[0], fn) if lists else value
    return value


@dataclass(frozen=True)
class Hop:
    """One step from a model to a path field: the YAML key, what holds the next model (`list`, `dict`
    or nothing) and the model that owns the key."""

    key: str
    holder: Literal["", "list", "dict"]
    owner: type[BaseModel]


def path_fields(model: type[BaseModel], *, route: tuple[Hop, ...] = (),
                seen: frozenset[type] = frozenset()) -> Iterator[tuple[str, tuple[Hop, ...], PathKind]]:
    """Every path field reachable from `model`: (dotted location, the route to it, kind). Tests iterate
    this, so a path field added later is tested without anyone listing it."""
    if model in seen:
        return
    seen = seen | {model}
    for name, info in model.model_fields.items():
        key = info.alias or name
        kind = _field_kind(_field_type(info))
        if kind:
            here = (*route, Hop(key, "", model))
            yield ".".join(h.key for h in here), here, kind
        for sub, holder in _models_in(info.annotation):
            yield from path_fields(sub, route=(*route, Hop(key, holder, model)), seen=seen)


def _field_kind(tp: Any) -> PathKind | None:
    """The path kind of a field: its own, or that of its list items / dict values."""
    kind = _leaf_kind(tp)
    if kind:
        return kind
    bare, _ = _unwrap(tp)
    arms = _arms(bare) or (bare,)
    for arm in arms:
        a, _ = _unwrap(arm)
        origin = typing.get_origin(a)
        args = typing.get_args(a)
        if origin in (list, tuple, set, frozenset) and args:
            kind = _field_kind(args[0])
        elif origin is dict and len(args) == 2:
            kind = _field_kind(args[1])
        if kind:
            return kind
    return None


def _models_in(tp: Any, holder: Literal["", "list", "dict"] = "") -> Iterator[tuple[type[BaseModel], str]]:
    bare, _ = _unwrap(tp)
    if isinstance(bare, type) and issubclass(bare, BaseModel):
        yield bare, holder
        return
    origin = typing.get_origin(bare)
    if origin in (list, tuple, set, frozenset):
        holder = "list"
    elif origin is dict:
        holder = "dict"
    for arg in typing.get_args(bare):
        if not isinstance(arg, (str, int, bool)) and arg is not type(None):
            yield from _models_in(arg, holder)
