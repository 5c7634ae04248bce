"""`custom`: your own filter class, named `module:Class` and built with `args`.

The class is either a `FilterStep` subclass or any class with `keep(row) -> True | "reason"` (False
means rejected under the filter's name). The module is imported when the recipe is validated, and
`args` are checked against the constructor's signature then too, so a typo fails before any work
starts, with its YAML path. The module must be importable (installed, or on PYTHONPATH).
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from vlmdata.config.errors import did_you_mean
from vlmdata.steps.base import FilterStep, Row


def load_class(target: str) -> type:
    """'pkg.mod:Class' → the class; ValueError saying what is wrong (format, import, attribute, shape)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr.isidentifier():
        raise ValueError(f"expected 'module:Class' (e.g. mypkg.filters:NoWatermarks), got '{target}'")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # any failure while importing user code is a config problem
        raise ValueError(f"cannot import module '{module_name}': {type(e).__name__}: {e}") from None
    if not hasattr(module, attr):
        names = [n for n in vars(module) if not n.startswith("_")]
        raise ValueError(f"module '{module_name}' has no attribute '{attr}'{did_you_mean(attr, names)}")
    klass = getattr(module, attr)
    if not inspect.isclass(klass):
        raise ValueError(f"'{target}' is not a class")
    if not (issubclass(klass, FilterStep) or callable(getattr(klass, "keep", None))):
        raise ValueError(f"'{target}' is neither a FilterStep subclass nor a class with keep(row)")
    return klass


class CustomFilter(FilterStep):
    """Wraps the user's filter so its rejects count under its own name in the funnel."""

    name: ClassVar[str] = "filter.custom"

    def __init__(self, *, target: str, args: dict[str, Any] | None = None) -> None:
        klass = load_class(target)
        self.impl = klass(**(args or {}))
        own = getattr(self.impl, "name", None)
        self.name = own if isinstance(own, str) and own not in ("step", "") else f"filter.custom.{klass.__name__}"  # type: ignore[misc]

    def keep(self, row: Row) -> bool | str:
        verdict = self.impl.keep(row)
        if isinstance(verdict, str):
            return verdict or self.name
        return bool(verdict)


class CustomSpec(BaseModel):
    """`{custom: {cls: "mypkg.filters:NoWatermarks", args: {threshold: 0.5}}}`."""

    model_config = ConfigDict(extra="forbid")
    cls: str
    args: dict[str, Any] = {}

    @field_validator("cls")
    @classmethod
    def _importable(cls_, value: str) -> str:  # noqa: N804 - `cls` is the field's name here
        load_class(value)
        return value

    @field_validator("args")
    @classmethod
    def _args_fit(cls_, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:  # noqa: N804
        target = info.data.get("cls")
        if target is None:  # cls itself is invalid; reported there
            return value
        try:
            inspect.signature(load_class(target)).bind(**value)
        except TypeError as e:
            raise ValueError(f"do not fit {target}: {e}") from None
        return value

    def build(self) -> CustomFilter:
        return CustomFilter(target=self.cls, args=self.args)
