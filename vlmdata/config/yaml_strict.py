"""YAML read strictly: a config error is a named problem, never a surprise.

PyYAML's `safe_load` lets the last of two equal keys win silently, follows a recursive alias into a
structure that later code recurses over forever, and expands anchors into billions of nodes. Here the
node graph is checked before anything is constructed: duplicate keys and recursive aliases become
problems with their YAML path, a graph that expands to more than `MAX_NODES` nodes is refused, and
syntax errors, non-UTF-8 bytes and absurd nesting are reported with the line where they are.
"""

from __future__ import annotations

from typing import Any

import yaml

from vlmdata.config.errors import Problem, yaml_path

DUPLICATE = "duplicate key"
MAX_NODES = 200_000  # after alias expansion; shipped recipes have a few hundred


class _TooLarge(Exception):
    pass


def decode_utf8(data: bytes, *, where: str, problems: list[Problem]) -> str | None:
    """The text of a config file, or None with a problem naming the first bad byte's line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        problems.append(Problem("", f"{where}: not UTF-8 (byte 0x{data[e.start]:02x} on line {line}); "
                                    f"save the file as UTF-8"))
        return None


def _check(node: yaml.Node, loc: tuple[Any, ...], *, ancestors: set[int], budget: list[int],
           problems: list[Problem], where: str) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooLarge
    if id(node) in ancestors:
        problems.append(Problem(yaml_path(loc), f"{where}: recursive alias (the value contains itself, line "
                                                f"{node.start_mark.line + 1}); write the value out"))
        return
    if isinstance(node, yaml.MappingNode):
        ancestors.add(id(node))
        seen: dict[Any, int] = {}
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode):
                name = key.value
                if key.tag != "tag:yaml.org,2002:merge":
                    ident = (key.tag, name)
                    if ident in seen:
                        problems.append(Problem(yaml_path((*loc, name)), f"{DUPLICATE} '{name}' (lines {seen[ident]} "
                                                f"and {key.start_mark.line + 1}): the last would silently win; "
                                                f"keep one"))
                    seen.setdefault(ident, key.start_mark.line + 1)
            else:
                name = "?"
                _check(key, (*loc, name), ancestors=ancestors, budget=budget, problems=problems, where=where)
            _check(value, (*loc, name), ancestors=ancestors, budget=budget, problems=problems, where=where)
        ancestors.discard(id(node))
    elif isinstance(node, yaml.SequenceNode):
        ancestors.add(id(node))
        for i, item in enumerate(node.value):
            _check(item, (*loc, i), ancestors=ancestors, budget=budget, problems=problems, where=where)
        ancestors.discard(id(node))


def load_yaml(text: str, *, where: str, problems: list[Problem], duplicates: list[Problem] | None = None) -> Any:
    """The document in `text`, or None when it cannot be read (the reasons appended to `problems`).

    Duplicate keys do not stop the reading when the caller passes `duplicates`: they go there (the
    config is still refused) and the document is returned, so its other problems are found too."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.YAMLError as e:  # the reader refuses control characters before parsing
        problems.append(Problem("", f"{where}: not valid YAML: {e}"))
        return None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        found: list[Problem] = []
        try:
            _check(node, (), ancestors=set(), budget=[MAX_NODES], problems=found, where=where)
        except _TooLarge:
            found.append(Problem("", f"{where}: more than {MAX_NODES} values once its aliases are expanded; "
                                     f"write the config out without nested aliases"))
        dup = [f for f in found if f.message.startswith(DUPLICATE)]
        if duplicates is not None and dup and len(dup) == len(found):
            duplicates.extend(dup)
            return loader.construct_document(node)
        if found:
            problems.extend(found)
            return None
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        problems.append(Problem("", f"{where}: not valid YAML: {e}"))
    except RecursionError:
        problems.append(Problem("", f"{where}: nested too deeply to read"))
    finally:
        loader.dispose()
    return None
