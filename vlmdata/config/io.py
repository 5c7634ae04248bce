"""Reading YAML configs: `extends:` merging, `${VAR}` / `${VAR:-default}` expansion, `--set` overrides.

Shared by recipes and training configs so both behave the same way. Nothing here touches the
files a config points to; that is validation's job.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from vlmdata.config.errors import ConfigError, Problem
from vlmdata.config.paths import PathKind, rebase
from vlmdata.config.yaml_strict import decode_utf8, load_yaml

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL", re.IGNORECASE)


def deep_merge(base: Any, override: Any) -> Any:
    """Later keys override; mappings merge recursively, lists and scalars replace."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = deep_merge(base[k], v) if k in base else v
        return out
    return override


def expand_env(value: Any, *, path: str = "", problems: list[Problem], secrets: set[str]) -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string; an unset VAR without default is a problem.

    Names of variables that look like credentials are collected in `secrets` so writers can redact them.
    """
    if isinstance(value, dict):
        return {k: expand_env(v, path=f"{path}.{k}" if path else str(k), problems=problems, secrets=secrets)
                for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, path=f"{path}[{i}]", problems=problems, secrets=secrets) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        name, default = m.group(1), m.group(2)
        if _SECRET_NAME.search(name):
            secrets.add(name)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        problems.append(Problem(path, f"environment variable ${{{name}}} is not set (set it, or write ${{{name}:-default}})"))
        return m.group(0)

    return _ENV.sub(sub, value)


def read_yaml(path: Path, *, problems: list[Problem], model: type[BaseModel] | None,
              seen: tuple[Path, ...] = (), deferred: list[Problem] | None = None) -> dict[str, Any]:
    """Read one YAML file and the chain of `extends:` bases below it (relative to each file's folder).
    `model` (the config's pydantic model) says which values are paths to re-base (`config_paths`)."""
    try:
        path = path.resolve()
        exists = path.is_file()
    except (OSError, RuntimeError, ValueError) as e:
        problems.append(Problem("extends" if seen else "", f"cannot read {path}: {e}"))
        return {}
    if path in seen:
        problems.append(Problem("extends", f"circular extends: {' -> '.join(str(p) for p in (*seen, path))}"))
        return {}
    if not exists:
        problems.append(Problem("extends" if seen else "", f"file not found: {path}"))
        return {}
    try:
        raw = path.read_bytes()
    except OSError as e:
        problems.append(Problem("extends" if seen else "", f"cannot read {path}: {e.strerror or e}"))
        return {}
    text = decode_utf8(raw, where=str(path), problems=problems)
    if text is None:
        return {}
    data = load_yaml(text, where=str(path), problems=problems, duplicates=deferred)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(Problem("", f"{path}: the top level must be a mapping, got {type(data).__name__}"))
        return {}
    base_ref = data.pop("extends", None)
    if base_ref is None:
        return data
    if not isinstance(base_ref, str) or not base_ref.strip() or "\x00" in base_ref:
        problems.append(Problem("extends", "must be a path to a YAML file"))
        return data
    base = read_yaml(path.parent / base_ref, problems=problems, model=model, seen=(*seen, path), deferred=deferred)
    base = _rebase_paths(base, model=model, from_dir=(path.parent / base_ref).resolve().parent, to_dir=path.parent)
    return deep_merge(base, data)


def _rebase_paths(value: dict[str, Any], *, model: type[BaseModel] | None, from_dir: Path,
                  to_dir: Path) -> dict[str, Any]:
    """Make relative paths written in a base file (in another folder) absolute, so they keep meaning
    "relative to the file they were written in" after the merge. Which values are paths comes from
    the model's field types (`vlmdata.config.paths`), never from a list of key names."""
    if from_dir == to_dir or model is None:
        return value

    def one(text: str, kind: PathKind) -> str:
        if "${" in text or not text or text.startswith("~") or Path(text).is_absolute():
            return text
        if kind == "template" and not text.endswith(".j2"):
            return text  # a built-in template name
        try:
            target = (from_dir / text).resolve()
        except (OSError, RuntimeError, ValueError):
            return text  # validation reports the path itself
        if kind == "maybe_path" and not target.exists():
            return text  # e.g. a hub model id
        return str(target)

    return rebase(value, model, one)


_SET_KEY = re.compile(r"^[A-Za-z_][\w-]*(?:\.[A-Za-z_][\w-]*|\.\d+|\[\d+\])*$")


def parse_set(assignments: list[str], *, problems: list[Problem]) -> list[tuple[list[Any], Any]]:
    """`a.b[1].c=value` (or `a.b.1.c=value`) -> (['a', 'b', 1, 'c'], the value read as YAML).

    A malformed key or value is a problem naming the override, never an exception."""
    out = []
    for item in assignments:
        if "=" not in item:
            problems.append(Problem("--set", f"'{item}' is not key.path=value (e.g. seed=1, sources[0].limit=10)"))
            continue
        key, raw = item.split("=", 1)
        key = key.strip()
        if not _SET_KEY.fullmatch(key):
            problems.append(Problem("--set", f"'{key}' is not a key path: names joined by '.', list items as [N] "
                                             f"or .N (e.g. sources[0].limit)"))
            continue
        parts: list[Any] = []
        for token in re.findall(r"[^.\[\]]+|\[\d+\]", key):
            parts.append(int(token[1:-1]) if token.startswith("[") else (int(token) if token.isdigit() else token))
        found: list[Problem] = []
        value = load_yaml(raw, where=f"--set {key}", problems=found) if raw.strip() else ""
        if found:
            problems.extend(Problem("--set", str(f)) for f in found)
            continue
        out.append((parts, value))
    return out


def apply_set(data: dict[str, Any], assignments: list[str], *, problems: list[Problem]) -> dict[str, Any]:
    """Apply `--set` overrides to the merged YAML before validation."""
    for parts, value in parse_set(assignments, problems=problems):
        node: Any = data
        shown = ".".join(map(str, parts))
        for i, p in enumerate(parts[:-1]):
            nxt = parts[i + 1]
            if isinstance(node, list) and isinstance(p, int) and p < len(node):
                node = node[p]
            elif isinstance(node, dict) and (p not in node or isinstance(node[p], (dict, list))):
                node = node.setdefault(p, [] if isinstance(nxt, int) else {})
            else:
                what = f"a list of {len(node)}" if isinstance(node, list) else f"the value {node.get(p)!r}" \
                    if isinstance(node, dict) else f"the value {node!r}"
                problems.append(Problem("--set", f"cannot follow '{p}' in {shown}: that level is {what}"))
                break
        else:
            last = parts[-1]
            if (isinstance(node, list) and isinstance(last, int) and last < len(node)) or isinstance(node, dict):
                node[last] = value
            elif isinstance(node, list):
                problems.append(Problem("--set", f"cannot set {shown}: the list has {len(node)} item(s) "
                                                 f"(index {last} is out of range)"))
            else:
                problems.append(Problem("--set", f"cannot set {shown}"))
    return data


def load_config_dict(path: str | Path, *, overrides: list[str] = (), what: str = "config",
                     model: type[BaseModel] | None = None,
                     env_problems: list[Problem] | None = None) -> tuple[dict[str, Any], set[str]]:
    """Merged, env-expanded, overridden YAML as a dict, plus the names of secret-looking env vars used.

    Raises ConfigError with every problem found so far. Unset `${VAR}`s and duplicate keys go into
    `env_problems` instead when the caller passes a list, so it can report them together with the
    validation's problems (the config is refused either way).
    """
    problems: list[Problem] = []
    deferred: list[Problem] = []
    data = read_yaml(Path(path), problems=problems, model=model, deferred=deferred)
    data = apply_set(data, list(overrides), problems=problems)
    if problems:
        raise ConfigError(deferred + problems, what=what)
    secrets: set[str] = set()
    unset: list[Problem] = list(deferred)
    data = expand_env(data, problems=unset, secrets=secrets)
    if unset and env_problems is None:
        raise ConfigError(unset, what=what)
    if env_problems is not None:
        env_problems.extend(unset)
    return data, secrets
