"""The house rules, read from the code: floors that import only downward, no cycles, small modules and functions."""
from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.conftest import ROOT

ADAPTER_LIBRARIES = {"mlflow", "prefect", "rich"}
# What each floor may import from the project; anything else runs back up a floor.
ALLOWED = {
    "pipeline.core": {"pipeline.core"},
    "pipeline.render": {"pipeline.core", "pipeline.render"},
    "pipeline.tracking": {"pipeline.core", "pipeline.tracking"},
    "flows": {"pipeline.core", "pipeline.render", "pipeline.tracking", "flows"},
}
LIBRARIES = {"pipeline.core": set(), "pipeline.render": {"rich"}, "pipeline.tracking": {"mlflow"},
             "flows": ADAPTER_LIBRARIES}


def _modules() -> dict[str, tuple[ast.Module, str]]:
    out = {}
    for package in ("pipeline", "flows"):
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            text = path.read_text()
            out[name] = (ast.parse(text), text)
    return out


MODULES = _modules()


def _imports(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def _floor(module: str) -> str:
    return next(f for f in ALLOWED if module == f or module.startswith(f + "."))


def _project(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m not in ("pipeline",)))
def test_each_module_imports_only_its_own_floor_and_the_floors_below(module):
    tree, _ = MODULES[module]
    floor = _floor(module)
    names = _imports(tree)
    upward = sorted(n for n in names if (p := _project(n)) and p != "pipeline" and _floor(p) not in ALLOWED[floor])
    libraries = sorted({n.split(".")[0] for n in names} & (ADAPTER_LIBRARIES - LIBRARIES[floor]))
    assert not upward, f"{module} imports up a floor: {upward}"
    assert not libraries, f"{module} ({floor}) imports {libraries}"


def test_no_import_cycles():
    graph = {m: {p for n in _imports(t) if (p := _project(n)) and p != m} for m, (t, _) in MODULES.items()}
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in graph[m]:
            assert state.get(n) != 1, "import cycle: " + " -> ".join(path[path.index(n):] + [n]) if n in path else n
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


def test_modules_under_300_lines_and_functions_under_50():
    long_modules = [m for m, (_, text) in MODULES.items() if len(text.splitlines()) > 300]
    long_functions = [f"{m}:{n.lineno} {n.name}" for m, (t, _) in MODULES.items() for n in ast.walk(t)
                      if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.end_lineno - n.lineno >= 50]
    assert not long_modules and not long_functions, (long_modules, long_functions)


CORE_IMPORT_PROBE = """
import builtins, importlib, sys

ADAPTERS = {adapters!r}
seen = set()
real_import = builtins.__import__


def watch(name, globals=None, locals=None, fromlist=(), level=0):
    # every import statement passes here, even of a module already loaded by someone else
    importer = (globals or {{}}).get("__name__", "")
    if level == 0 and name.split(".")[0] in ADAPTERS and importer.startswith("pipeline"):
        seen.add(importer)
    return real_import(name, globals, locals, fromlist, level)


builtins.__import__ = watch
for m in {modules!r}:
    importlib.import_module(m)
print(sorted(seen))
"""


def test_the_core_loads_without_any_adapter_library():
    """Imported for real, no core module runs an import of mlflow, prefect or rich, at module level or deferred
    to import time of another core module. (A third-party library may import one for itself: sklearn imports rich.)"""
    core = sorted(m for m in MODULES if m.startswith("pipeline.core"))
    code = CORE_IMPORT_PROBE.format(adapters=sorted(ADAPTER_LIBRARIES), modules=core)
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]", out.stdout
