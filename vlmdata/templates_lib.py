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
so a typo in a template is a clear per-row reject, not a silently empty prompt.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant")


def template_root() -> Path:
    """The folder of shipped templates (the `vlmdata.templates` package, or the checkout's templates/)."""
    try:
        from importlib.resources import files

        root = Path(str(files("vlmdata.templates")))
        if root.is_dir():
            return root
    except (ModuleNotFoundError, TypeError):
        pass
    return Path(__file__).resolve().parent.parent / "templates"


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
        out: dict[str, str] = {}
        for role in ROLES:
            block = tmpl.blocks.get(role)
            if block is not None:
                out[role] = "".join(block(ctx)).strip()
        for name, block in tmpl.blocks.items():  # few-shot pairs of synthesis templates
            if name.startswith("example_"):
                out[name] = "".join(block(ctx)).strip()
        return out

    @property
    def roles(self) -> tuple[str, ...]:
        tmpl = _environment().from_string(self.source)
        return tuple(r for r in ROLES if r in tmpl.blocks)


@lru_cache(maxsize=1)
def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True)


def load_template(ref: str, *, base_dir: Path | None = None) -> Template:
    path = find_template(ref, base_dir=base_dir)
    if path is None:
        raise FileNotFoundError(f"template '{ref}' not found")
    source = path.read_text(encoding="utf-8")
    return Template(name=ref, sha256=hashlib.sha256(source.encode()).hexdigest()[:16], source=source)


def check_template(ref: str, *, base_dir: Path | None = None) -> str | None:
    """A problem message if `ref` is not a usable template, else None (used by recipe validation)."""
    from jinja2 import TemplateSyntaxError

    from vlmdata.validation import did_you_mean

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
