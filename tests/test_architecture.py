"""The layering of the fastinit package, checked from its source with ``ast``.

Rules (docs/ARCHITECTURE.md):

- no import cycle between fastinit's modules, counting imports inside functions (a lazy
  import does not make a cycle go away; it only hides it until run time);
- no reach-ins: a module uses another module's names without a leading underscore only
  (``_stream.resolve`` yes, ``_fills._random_fill`` no). A private *module* may be imported
  (``from . import _fills``); its private *names* stay inside it;
- the library never imports the benchmark CLI (``fastinit.bench``); only ``__main__`` does.

A package's ``__init__`` re-exports its children, so the implicit import of a parent package
that Python performs for ``import a.b`` is not an edge; an explicit ``import fastinit`` is.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PACKAGE = "fastinit"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE


@dataclass
class Module:
    name: str
    path: Path
    is_package: bool
    imports: set[str] = field(default_factory=set)
    reach_ins: list[str] = field(default_factory=list)


def discover(root: Path = ROOT) -> dict[str, Module]:
    """Every ``.py`` module under ``root``, by dotted name."""
    modules: dict[str, Module] = {}
    # Native extension modules (``_core``, ``_blas``, ``_cuda``) are known by their stubs.
    for stub in sorted(root.rglob("*.pyi")):
        if not stub.with_suffix(".py").exists():
            name = ".".join(stub.relative_to(root.parent).with_suffix("").parts)
            modules[name] = Module(name, stub, False)
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        modules[".".join(parts)] = Module(".".join(parts), path, is_package)
    return modules


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _resolve_from(module: Module, level: int, target: str | None) -> str:
    """The absolute module name of ``from <level dots><target> import ...`` in ``module``."""
    if level == 0:
        return target or ""
    base = module.name.split(".")
    if not module.is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def analyse(modules: dict[str, Module]) -> None:
    """Fill each module's ``imports`` (edges inside the package) and ``reach_ins``."""
    for mod in modules.values():
        if mod.path.suffix != ".py":
            continue
        tree = ast.parse(mod.path.read_text(encoding="utf-8"), str(mod.path))
        aliases: dict[str, str] = {}  # local name -> fastinit module it is bound to

        def edge(target: str, mod: Module = mod) -> None:
            if target in modules and target != mod.name:
                mod.imports.add(target)

        for node in ast.walk(tree):  # every level: top, functions, try/except, if blocks
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == PACKAGE or alias.name.startswith(PACKAGE + "."):
                        edge(alias.name)
                        if alias.asname:
                            aliases[alias.asname] = alias.name
                        else:
                            aliases[alias.name.split(".")[0]] = PACKAGE
            elif (
                isinstance(node, ast.Call)
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and (
                    (isinstance(node.func, ast.Name) and node.func.id == "__import__")
                    or (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                )
            ):
                edge(node.args[0].value)  # __import__("fastinit"), importlib.import_module(...)
            elif isinstance(node, ast.ImportFrom):
                source = _resolve_from(mod, node.level, node.module)
                if not (source == PACKAGE or source.startswith(PACKAGE + ".")):
                    continue
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if sub in modules:  # `from . import _fills`: a module, not a name
                        edge(sub)
                        aliases[alias.asname or alias.name] = sub
                        continue
                    edge(source)
                    if source != mod.name and _is_private(alias.name):
                        mod.reach_ins.append(f"from {source} import {alias.name}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and _is_private(node.attr)
            ):
                owner = aliases[node.value.id]
                if f"{owner}.{node.attr}" not in modules and owner != mod.name:
                    mod.reach_ins.append(f"{owner}.{node.attr}")


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def visit(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(modules[v].imports):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(modules):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, Module]:
    modules = discover()
    analyse(modules)
    return modules


def _reach_ins(modules: dict[str, Module]) -> Iterator[str]:
    for mod in modules.values():
        for what in mod.reach_ins:
            yield f"{mod.name}: {what}"


def test_no_import_cycles(graph: dict[str, Module]) -> None:
    assert cycles(graph) == []


def test_no_reach_ins_to_private_names(graph: dict[str, Module]) -> None:
    assert list(_reach_ins(graph)) == []


def test_library_never_imports_the_benchmarks(graph: dict[str, Module]) -> None:
    bench = f"{PACKAGE}.bench"
    offenders = [
        f"{mod.name} -> {target}"
        for mod in graph.values()
        if not (mod.name == bench or mod.name.startswith(bench + "."))
        and mod.name != f"{PACKAGE}.__main__"
        for target in mod.imports
        if target == bench or target.startswith(bench + ".")
    ]
    assert offenders == []


def test_the_checker_sees_cycles_and_reach_ins(tmp_path: Path) -> None:
    """The analysis itself: a lazy import that closes a cycle (``from`` or ``__import__``),
    and a private name used through a module alias and through ``from ... import``, are all
    found."""
    pkg = tmp_path / PACKAGE
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from ._a import f\n")
    (pkg / "_a.py").write_text("from . import _b\n\ndef f():\n    return _b._hidden()\n")
    (pkg / "_b.py").write_text("def _hidden():\n    from ._a import f\n    return f\n")
    (pkg / "_d.py").write_text("import fastinit._e\n")
    (pkg / "_e.py").write_text("def g():\n    return __import__('fastinit._d')\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "_c.py").write_text("from .._a import _private\nimport fastinit.sub as s\n")
    modules = discover(pkg)
    analyse(modules)
    assert cycles(modules) == [
        [f"{PACKAGE}._a", f"{PACKAGE}._b"],
        [f"{PACKAGE}._d", f"{PACKAGE}._e"],
    ]
    assert sorted(_reach_ins(modules)) == [
        f"{PACKAGE}._a: {PACKAGE}._b._hidden",
        f"{PACKAGE}.sub._c: from {PACKAGE}._a import _private",
    ]
