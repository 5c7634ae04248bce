"""A seeded config fuzzer, shared by the vlmdata recipe and vlmtrain config tests.

    stats = fuzz(configs=sorted(Path("recipes").glob("*.yaml")), model=Recipe, check=check_recipe,
                 per_config=200, seed=0, workdir=tmp_path)
    assert stats.crashes == []

Each shipped config is read, its relative paths (found from the model's field types, and `extends:`) made
absolute so the mutant can live in a scratch folder, and then mutated: keys deleted, renamed (typos) or
added; values replaced by other types, huge, negative, non-finite, empty, over-long, `~nouser` or
`${UNSET}`; sections duplicated (duplicate YAML keys), swapped or nested wrongly; the text truncated, made
non-UTF-8 or given a recursive alias; `--set` overrides that are malformed. `check(path, overrides)` must
either return (the config is ok) or raise the config's error type with named problems; anything else is
a crash, recorded with the mutation that caused it.
"""

from __future__ import annotations

import copy
import random
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vlmdata.config.paths import rebase

ODD_VALUES: tuple[Any, ...] = (
    None, "", "abc", -1, 0, 1, 10**9, 10**12, -(10**12), 1e300, float("inf"), float("-inf"), float("nan"), True,
    False, [], {}, {"x": 1}, [1, "a", None], "~nouser_fuzz/x", "x" * 300, "a/" * 200 + "b", "${FUZZ_UNSET_VAR_Q}",
    "nul\x00byte", "/", ".", "..", "1e9", "500MB", "abc MB", 0.5, -0.5, "jsnol", "\u00e9\u4e2d", " ", "\n",
)
BAD_SETS: tuple[str, ...] = (
    "=1", "seed", "seed=", "a..b=1", ".=1", "[0]=1", "sources[99].path=x", "sources.0.kind=jsnl", "seed=[1",
    "seed={a: 1", "seed=: :", "name=\x00", "sources[0]=5", "x[=1", "output.path.deeper=1", "seed=.inf",
    "sources[-1].name=q", "]=]", "output=5", "sources=null", "seed=&a [*a]",
)


@dataclass
class FuzzStats:
    mutants: int = 0
    ok: int = 0
    refused: int = 0
    crashes: list[str] = field(default_factory=list)
    problems: int = 0

    def line(self) -> str:
        return (f"{self.mutants} mutants: {self.ok} ok, {self.refused} refused with named problems "
                f"({self.problems} problems), {len(self.crashes)} crashes")


def _absolute(data: dict[str, Any], *, model: Any, folder: Path) -> dict[str, Any]:
    def one(text: str, kind: str) -> str:
        if "${" in text or text.startswith("~") or Path(text).is_absolute():
            return text
        if kind == "template" and not text.endswith(".j2"):
            return text
        target = (folder / text).resolve()
        return str(target) if kind != "maybe_path" or target.exists() else text

    out = rebase(data, model, one)
    if isinstance(out.get("extends"), str):
        out["extends"] = str((folder / out["extends"]).resolve())
    return out


def _nodes(tree: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location (tuple of keys / indices) in a YAML tree, the root excluded."""
    out = []
    if isinstance(tree, dict):
        for k, v in tree.items():
            out.append((*path, k))
            out += _nodes(v, (*path, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out.append((*path, i))
            out += _nodes(v, (*path, i))
    return out


def _parent(tree: Any, loc: tuple[Any, ...]) -> Any:
    for k in loc[:-1]:
        tree = tree[k]
    return tree


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 2:
        return word + "x"
    i = rng.randrange(len(word) - 1)
    ops = [word[:i] + word[i + 1:], word[:i] + word[i + 1] + word[i] + word[i + 2:], word + "s", word[:i] + "q" + word[i:]]
    return rng.choice(ops)


def mutate_tree(data: dict[str, Any], rng: random.Random) -> tuple[str, dict[str, Any]]:
    tree = copy.deepcopy(data)
    nodes = _nodes(tree)
    if not nodes:
        return "empty", tree
    loc = rng.choice(nodes)
    parent = _parent(tree, loc)
    key = loc[-1]
    op = rng.choice(["delete", "rename", "value", "value", "value", "wrap", "add", "swap", "copy"])
    if op == "delete":
        del parent[key]
    elif op == "rename" and isinstance(parent, dict):
        parent[_typo(str(key), rng)] = parent.pop(key)
    elif op == "value":
        parent[key] = rng.choice(ODD_VALUES)
    elif op == "wrap":
        parent[key] = rng.choice([[parent[key]], {"x": parent[key]}, [parent[key], parent[key]]])
    elif op == "add" and isinstance(parent, dict):
        parent[rng.choice(["extra", _typo(str(key), rng), "kind", "path", "name"])] = rng.choice(ODD_VALUES)
    elif op == "swap":
        other = rng.choice(nodes)
        try:
            op_parent = _parent(tree, other)
            parent[key], op_parent[other[-1]] = op_parent[other[-1]], parent[key]
        except (KeyError, IndexError, TypeError):
            pass
    elif op == "copy" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[key]))
    return f"{op} {'.'.join(map(str, loc))}", tree


def mutate_text(text: str, rng: random.Random) -> tuple[str, bytes]:
    lines = text.splitlines(keepends=True)
    op = rng.choice(["truncate", "duplicate_key", "latin1", "alias", "tab", "merge_key", "anchor_bomb", "junk"])
    if op == "truncate":
        out = text[: rng.randrange(len(text) + 1)].encode()
    elif op == "duplicate_key":
        top = [ln for ln in lines if ln[:1].isalpha()]
        out = (text + (rng.choice(top) if top else "name: again\n")).encode()
    elif op == "latin1":
        out = text.encode() + "\ndescription: caf\u00e9\n".encode("latin-1")
    elif op == "alias":
        out = (text + "\nloop: &loop [*loop]\n").encode()
    elif op == "tab":
        i = rng.randrange(len(lines)) if lines else 0
        out = "".join(lines[:i] + ["\t" + ln for ln in lines[i:i + 1]] + lines[i + 1:]).encode()
    elif op == "merge_key":
        out = (text + "\nbase: &b {x: 1}\nother: {<<: *b, y: 2}\n").encode()
    elif op == "anchor_bomb":
        out = (text + "\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
               "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
               "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n").encode()
    else:
        out = (text + rng.choice(["\n: :\n", "\n- x\n", "\n{\n", "\nsources: !!python/object:os.system {}\n"])).encode()
    return op, out


def fuzz(*, configs: Sequence[Path], model: Any, check: Callable[[Path, list[str]], int | None],
         expected: type[BaseException], per_config: int, seed: int, workdir: Path) -> FuzzStats:
    """Run `per_config` mutants of each config through `check`; see the module docstring.
    `check` returns the number of problems it saw (0 or None for ok) or raises `expected`."""
    stats = FuzzStats()
    workdir.mkdir(parents=True, exist_ok=True)
    for c, config in enumerate(configs):
        rng = random.Random(f"{seed}:{config.name}")
        original = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        base = _absolute(original, model=model, folder=config.resolve().parent)
        for i in range(per_config):
            overrides: list[str] = []
            kind = rng.random()
            if kind < 0.6:
                what, tree = mutate_tree(base, rng)
                if rng.random() < 0.3:
                    what2, tree = mutate_tree(tree, rng)
                    what += f" + {what2}"
                body = yaml.safe_dump(tree, sort_keys=False, allow_unicode=True).encode()
            elif kind < 0.85:
                what, body = mutate_text(yaml.safe_dump(base, sort_keys=False), rng)
            else:
                overrides = [rng.choice(BAD_SETS)]
                what, body = f"--set {overrides[0]!r}", yaml.safe_dump(base, sort_keys=False).encode()
            path = workdir / f"m{c}_{i}.yaml"
            path.write_bytes(body)
            stats.mutants += 1
            try:
                n = check(path, overrides)
                stats.ok += 1
                stats.problems += n or 0
            except expected as e:
                problems = getattr(e, "problems", None) or [str(e)]
                if not problems or not all(str(p).strip() for p in problems) or "Traceback" in str(e):
                    stats.crashes.append(f"{config.name} #{i} [{what}]: unnamed problems: {e}")
                else:
                    stats.refused += 1
                    stats.problems += len(problems)
            except Exception as e:  # noqa: BLE001 - the point: anything else is a crash to report
                tb = traceback.extract_tb(e.__traceback__)[-1]
                stats.crashes.append(f"{config.name} #{i} [{what}]: {type(e).__name__}: {str(e)[:200]} "
                                     f"at {Path(tb.filename).name}:{tb.lineno}")
            finally:
                path.unlink(missing_ok=True)
    return stats
