"""The layout's rules, checked on the source so they cannot quietly erode (see ARCHITECTURE.md).

The import graph counts every import, function-level and `TYPE_CHECKING` ones included: a circle hidden
inside a function still means two modules cannot be understood, tested or moved one without the other.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vlmdata", "vlmtrain")
# What vlmtrain may use of vlmdata: the row contract, answer scoring, sampling math and config reading.
VLMDATA_PUBLIC = ("vlmdata.schema", "vlmdata.answers", "vlmdata.sampling", "vlmdata.config")
MAX_VLMTRAIN_TOP_LEVEL = 12


def _modules() -> dict[str, Path]:
    mods: dict[str, Path] = {}
    for pkg in PACKAGES:
        for f in (ROOT / pkg).rglob("*.py"):
            name = ".".join(f.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = f
    return mods


def _imported_names(module: str, path: Path) -> set[str]:
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _graph() -> dict[str, set[str]]:
    """Module → the project modules it imports (a `from pkg import name` counts `pkg.name` when it is a module)."""
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in mods.items():
        targets = set()
        for name in _imported_names(module, path):
            while name and name not in mods:
                name = name.rsplit(".", 1)[0] if "." in name else ""
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected sets of more than one module (Tarjan, iterative so deep graphs do not recurse)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_circle_finder_finds_a_circle() -> None:
    """The checker itself can fail: a planted two-module circle and a three-module one are reported."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c", "a"}, "f": set()}
    assert sorted(_circles(graph)) == [["a", "b"], ["c", "d", "e"]]


def test_no_import_circles() -> None:
    circles = _circles(_graph())
    assert not circles, "import circles (function-level imports included):\n" + "\n".join(
        " ↔ ".join(c) for c in circles)


def test_vlmtrain_uses_only_the_public_surface_of_vlmdata() -> None:
    graph = _graph()
    used = {t for m, ts in graph.items() if m.startswith("vlmtrain") for t in ts if t.startswith("vlmdata")}
    outside = sorted(t for t in used if not any(t == p or t.startswith(p + ".") for p in VLMDATA_PUBLIC))
    assert not outside, f"vlmtrain imports vlmdata internals {outside}; only {VLMDATA_PUBLIC} are public"


def test_vlmdata_never_imports_vlmtrain() -> None:
    graph = _graph()
    back = sorted(f"{m} → {t}" for m, ts in graph.items() if m.startswith("vlmdata") for t in ts
                  if t.startswith("vlmtrain"))
    assert not back, back


def test_steps_never_import_the_recipe_and_kernels_never_import_steps() -> None:
    graph = _graph()
    steps_to_recipe = sorted(m for m, ts in graph.items() if m.startswith("vlmdata.steps") and "vlmdata.recipe" in ts)
    assert not steps_to_recipe, f"steps import the recipe: {steps_to_recipe}"
    kernels = [m for m in graph if m.startswith("vlmdata.dedup")]
    upward = sorted(f"{m} → {t}" for m in kernels for t in graph[m]
                    if t.startswith(("vlmdata.steps", "vlmdata.recipe", "vlmdata.engines", "vlmdata.output")))
    assert not upward, f"numpy kernels import the layers above them: {upward}"


def test_vlmtrain_top_level_stays_small() -> None:
    top = sorted(p.stem for p in (ROOT / "vlmtrain").glob("*.py") if p.name != "__init__.py")
    assert len(top) <= MAX_VLMTRAIN_TOP_LEVEL, top


@pytest.mark.parametrize(("package", "forbidden"), [
    ("vlmtrain.config", ("torch", "transformers", "peft", "ray")),
    ("vlmdata.config", ("torch", "transformers", "peft", "ray", "numpy", "datasets")),
])
def test_config_packages_stay_light(package: str, forbidden: tuple[str, ...]) -> None:
    """Validation runs before any model loads or data is read, so the config packages import none of these."""
    mods = sorted(m for m in _modules() if m == package or m.startswith(package + "."))
    code = ("import importlib, sys\n"
            f"for m in {mods!r}:\n    importlib.import_module(m)\n"
            f"print(','.join(sorted(m for m in {forbidden!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert not out.stdout.strip(), f"importing {package} pulls in {out.stdout.strip()}"
