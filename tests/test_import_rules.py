"""Import rules of the package, read from the source with ``ast`` (nothing is imported).

- The core (every module but the dock widgets in ``napari_zonation.widgets`` and the npe2
  reader/sample adapter ``napari_zonation._napari_io``) never imports napari, Qt bindings,
  magicgui, the widgets or the adapter: not at module level, not inside a function.
- The adapter imports none of them at module level (it may open a Qt dialog lazily).
- No import cycle among ``napari_zonation`` modules, counting the imports inside functions
  too (a lazy import hides a cycle from the interpreter, not from a reader).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import napari_zonation

ROOT = Path(napari_zonation.__file__).parent
PACKAGE = "napari_zonation"
#: top-level names the core must never import
FORBIDDEN = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "superqt")
#: napari-facing modules of the package (everything else is the core)
FRONT = (f"{PACKAGE}.widgets", f"{PACKAGE}._napari_io")
#: cycles known today, each the strongly connected set of modules, with why it stays for now
#: (none: the zoning vocabulary lives in ``vocabulary``, which imports nothing of the package).
KNOWN_CYCLES: list[frozenset[str]] = []


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str, source: str, *, top_level_only: bool = False) -> set[str]:
    """Absolute names of the modules ``source`` (module ``name``) imports.

    ``from x import y`` names ``x``, and ``x.y`` too when that is a module of the package;
    ``from . import y`` of a submodule names only the submodule (as import-linter does).
    """
    tree = ast.parse(source)
    is_package = name == PACKAGE or MODULES.get(name, Path()).name == "__init__.py"
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            subs = {f"{module}.{a.name}" for a in node.names} & set(MODULES)
            found.update(subs)
            if node.module or len(subs) < len(node.names):
                found.add(module)
    return found


def is_front(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FRONT)


def forbidden(imported: set[str]) -> list[str]:
    bad = [m for m in imported if m.split(".")[0] in FORBIDDEN]
    return sorted(bad + [m for m in imported if is_front(m)])


def graph() -> dict[str, set[str]]:
    return {
        name: {m for m in imports_of(name, path.read_text()) if m in MODULES and m != name}
        for name, path in MODULES.items()
    }


def cycles(g: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected sets of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    for root in g:
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(g[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                members = set()
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    members.add(w)
                    if w == v:
                        break
                if len(members) > 1:
                    found.append(frozenset(members))
    return found


def test_the_walk_sees_the_package():
    assert {PACKAGE, f"{PACKAGE}.segment.api", f"{PACKAGE}.widgets._base"} <= set(MODULES)
    g = graph()
    assert f"{PACKAGE}.segment" in g[f"{PACKAGE}"]  # `from .segment import ...` in __init__
    assert f"{PACKAGE}.channels" in g[f"{PACKAGE}.descriptors"]  # a lazy import counts


@pytest.mark.parametrize("name", sorted(m for m in MODULES if not is_front(m)))
def test_core_module_imports_no_gui(name):
    bad = forbidden(imports_of(name, MODULES[name].read_text()))
    assert not bad, (
        f"{name} imports {bad}: the core must stay importable and usable without napari or "
        "Qt. Put GUI code in napari_zonation.widgets and call the core from there."
    )


def test_napari_adapter_imports_no_gui_at_module_level():
    name = f"{PACKAGE}._napari_io"
    top = imports_of(name, MODULES[name].read_text(), top_level_only=True)
    assert not [m for m in top if m.split(".")[0] in FORBIDDEN]


def test_the_rule_catches_a_gui_import():
    """The checks above would fail on a core module that imports napari or the widgets."""
    assert forbidden(imports_of(f"{PACKAGE}.io", "import napari\n")) == ["napari"]
    src = "def f():\n    from qtpy.QtWidgets import QWidget\n"
    assert forbidden(imports_of(f"{PACKAGE}.io", src)) == ["qtpy.QtWidgets"]
    src = "from .widgets._base import Worker\n"
    assert forbidden(imports_of(f"{PACKAGE}.io", src)) == [f"{PACKAGE}.widgets._base"]


def test_no_import_cycles():
    found = cycles(graph())
    new = [sorted(c) for c in found if c not in KNOWN_CYCLES]
    assert not new, f"import cycles among the package's modules: {new}"
    stale = [sorted(c) for c in KNOWN_CYCLES if c not in found]
    assert not stale, f"a known cycle is gone or changed: update KNOWN_CYCLES {stale}"


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [frozenset("abc")]
    assert cycles({"a": {"b"}, "b": set()}) == []
