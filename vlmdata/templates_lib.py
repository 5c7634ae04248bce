"""Jinja2 prompt templates: found by name, rendered sandboxed, strict about missing variables.

A template is one `.j2` file with named blocks, one per chat role:

    {% block system %}You are a radiologist.{% endblock %}
    {% block user %}Describe this {{ modality_name }} image.{% endblock %}
    {% block assistant %}This is a {{ plane }} {{ modality }} slice.{% endblock %}

Synthesis templates add few-shot pairs as `example_1_user` / `example_1_assistant`, ... blocks.
`user` is required; `system` and `assistant` are optional (an instruction template renders the
reference answer in `assistant`; a synthesis prompt leaves it to the model). Names are looked up in
the shipped `templates/` package (`medical/report`), or a path to a `.j2` file is used as given.
The environment is sandboxed (no attribute access to internals) and undefined variables raise,
so a typo in a template is a clear per-row reject, not a silently empty prompt. The sandbox also
bounds what one row can cost: `range` (Jinja's own cap per range, MAX_STEPS for all loops of a render,
nested ones too), string and list repetition and powers (`MAX_SIZE`), and the rendered text;
`{% include %}` has no loader (a template is one file).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from vlmdata.config.errors import did_you_mean

ROLES = ("system", "user", "assistant")


def template_root() -> Path:
    """The folder of shipped templates: `vlmdata/templates`, a link to the checkout's top-level templates/ that
    the wheel ships as a real folder, so one path works in a checkout and after `pip install`."""
    return Path(__file__).resolve().parent / "templates"


def available_templates() -> list[str]:
    root = template_root()
    return sorted(p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.j2"))


def find_template(ref: str, *, base_dir: Path | None = None) -> Path | None:
    """A template name (`medical/report`) or a `.j2` path (relative to base_dir) -> file, or None."""
    if ref.endswith(".j2"):
        p = Path(ref).expanduser()
        p = p if p.is_absolute() else (base_dir or Path.cwd()) / p
        return p.resolve() if p.is_file() else None
    candidate = template_root() / f"{ref}.j2"
    return candidate if candidate.is_file() else None


@dataclass(frozen=True)
class Template:
    """A loaded template: its name, the sha256 of its source (for lineage), and its role blocks."""

    name: str
    sha256: str
    source: str

    def render(self, context: dict[str, Any]) -> dict[str, str]:
        """Render each role block present; returns {role: text}. Raises jinja2 errors on bad context."""
        tmpl = _environment().from_string(self.source)
        ctx = tmpl.new_context(dict(context))
        token = _steps.set([MAX_STEPS])
        try:
            return self._render_blocks(tmpl, ctx)
        finally:
            _steps.reset(token)

    @staticmethod
    def _render_blocks(tmpl: Any, ctx: Any) -> dict[str, str]:
        out: dict[str, str] = {}
        for role in ROLES:
            block = tmpl.blocks.get(role)
            if block is not None:
                out[role] = _bounded(block(ctx)).strip()
        for name, block in tmpl.blocks.items():  # few-shot pairs of synthesis templates
            if name.startswith("example_"):
                out[name] = _bounded(block(ctx)).strip()
        return out

    @property
    def roles(self) -> tuple[str, ...]:
        tmpl = _environment().from_string(self.source)
        return tuple(r for r in ROLES if r in tmpl.blocks)


MAX_SIZE = 1_000_000  # characters or items one operation of a template may make
MAX_STEPS = 1_000_000  # `range` items one render may walk through, all loops together (nested ones too)
_steps: ContextVar[list[int]] = ContextVar("vlmdata_template_steps")


def _counted(rng: range) -> Iterator[int]:
    from jinja2.exceptions import SecurityError

    budget = _steps.get(None)
    for i in rng:
        if budget is not None:
            budget[0] -= 1
            if budget[0] < 0:
                raise SecurityError(f"the template's loops ran more than {MAX_STEPS} steps on this row")
        yield i


def _bounded_range(*args: int) -> Any:
    """Jinja's `safe_range` (at most 100 000 items), counted against the render's MAX_STEPS."""
    from jinja2.sandbox import safe_range

    rng = safe_range(*args)
    return _Range(rng)


class _Range:
    """A range whose iteration is counted (len, indexing and `in` work as on a range)."""

    def __init__(self, rng: range) -> None:
        self.rng = rng

    def __iter__(self) -> Iterator[int]:
        return _counted(self.rng)

    def __len__(self) -> int:
        return len(self.rng)

    def __getitem__(self, i: Any) -> Any:
        return self.rng[i]

    def __contains__(self, x: Any) -> bool:
        return x in self.rng


def _too_big(op: str, left: Any, right: Any) -> str | None:
    if op == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(n, int) and len(seq) * max(n, 0) > MAX_SIZE:
                return f"{type(seq).__name__} * {n} would make {len(seq) * n} items (limit {MAX_SIZE})"
    if (op == "**" and isinstance(left, int | float) and isinstance(right, int | float)
            and abs(right) > 1000 and abs(left) > 1):
        return f"{left} ** {right} is too large"
    return None


@lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import SandboxedEnvironment

    class BoundedEnvironment(SandboxedEnvironment):
        """SandboxedEnvironment with bounded repetition and powers: one row cannot exhaust memory."""

        intercepted_binops = frozenset(["*", "**"])

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            problem = _too_big(operator, left, right)
            if problem:
                raise SecurityError(problem)
            return super().call_binop(context, operator, left, right)

    env = BoundedEnvironment(undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True)
    env.globals["range"] = _bounded_range
    return env


def _bounded(pieces: Any) -> str:
    """Join a block's output, stopping with an error past MAX_SIZE characters (a loop gone wild)."""
    from jinja2.exceptions import SecurityError

    out: list[str] = []
    n = 0
    for piece in pieces:
        n += len(piece)
        if n > MAX_SIZE:
            raise SecurityError(f"rendered text is longer than {MAX_SIZE} characters")
        out.append(piece)
    return "".join(out)


def load_template(ref: str, *, base_dir: Path | None = None) -> Template:
    path = find_template(ref, base_dir=base_dir)
    if path is None:
        raise FileNotFoundError(f"template '{ref}' not found")
    source = path.read_text(encoding="utf-8")
    return Template(name=ref, sha256=hashlib.sha256(source.encode()).hexdigest()[:16], source=source)


def check_template(ref: str, *, base_dir: Path | None = None) -> str | None:
    """A problem message if `ref` is not a usable template, else None (used by recipe validation)."""
    from jinja2 import TemplateSyntaxError

    try:
        path = find_template(ref, base_dir=base_dir)
    except (OSError, ValueError, RuntimeError) as e:  # a name too long for the file system, a NUL byte, ~nouser
        return f"template '{ref[:60]}' cannot be looked up: {getattr(e, 'strerror', None) or e}"
    if path is None:
        names = available_templates()
        return f"template '{ref}' not found{did_you_mean(ref, names)} (shipped: {', '.join(names) or 'none'})"
    try:
        tmpl = _environment().from_string(path.read_text(encoding="utf-8"))
    except TemplateSyntaxError as e:
        return f"template '{ref}' ({path}) line {e.lineno}: {e.message}"
    except (OSError, UnicodeDecodeError) as e:
        return f"template '{ref}' ({path}) cannot be read: {e}"
    if "user" not in tmpl.blocks:
        return f"template '{ref}' ({path}) has no {{% block user %}}"
    return None
