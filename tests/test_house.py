"""The house rules (docs/layout.md): one folder per part, dependencies flow one way, no cycles.

Why a test and not import-linter: import-linter builds its graph from the ``lionbench`` folder
alone and cannot see ``methods/``, which is installed as ``lionbench.methods`` from beside it,
so the methods layer would go unchecked. This test reads every module of both trees with
``ast`` and takes *every* import into account (module level, inside functions, under
``TYPE_CHECKING``), so a function-level import cannot hide a cycle or an upward dependency.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Higher parts may import lower ones; parts of one rank never import each other.
RANKS = {
    "cli": 0,
    "runner": 1, "report": 1, "perf": 1,
    "executors": 2,
    "train": 3,
    "methods": 4, "data": 4, "store": 4,
    "core": 5,  # lionbench/__init__, config, errors, settings, deq, robust, backbones, matrix,
}               # files
CORE_MODULES = {"lionbench", "lionbench.config", "lionbench.errors", "lionbench.settings",
                "lionbench.deq", "lionbench.robust", "lionbench.backbones", "lionbench.matrix",
                "lionbench.files"}
NO_TORCH_PARTS = ("report", "store")  # what `table`, `status` and `export` load
TORCH_PACKAGES = {"torch", "torchvision", "timm"}


def module_files() -> dict[str, Path]:
    """lionbench module name -> file, for lionbench/ and methods/ (as lionbench.methods)."""
    out = {}
    for base, prefix in ((ROOT / "lionbench", "lionbench"), (ROOT / "methods",
                                                              "lionbench.methods")):
        for path in base.rglob("*.py"):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([prefix, *parts])] = path
    return out


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """Every lionbench module and third-party top-level package ``name`` imports, anywhere."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if is_package else name.split(".")[:-1]
                package = package[:len(package) - node.level + 1]
                base = ".".join(package + ([base] if base else []))
            # `from pkg import sub` imports the module pkg.sub; `from pkg import name`, pkg
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            if not target.startswith("lionbench"):
                found.add(target.split(".")[0])
                continue
            while target and target not in modules:  # `from pkg import name`: the package
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def part_of(module: str) -> str:
    if module in CORE_MODULES:
        return "core"
    return module.split(".")[1]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def test_every_module_belongs_to_a_known_part(graph):
    unknown = sorted(m for m in graph if part_of(m) not in RANKS)
    assert not unknown, f"modules outside the house's parts: {unknown}"


def test_dependencies_flow_one_way(graph):
    wrong = []
    for module, targets in graph.items():
        src = part_of(module)
        for target in sorted(t for t in targets if t.startswith("lionbench")):
            dst = part_of(target)
            if dst != src and RANKS[dst] <= RANKS[src]:
                wrong.append(f"{module} ({src}) imports {target} ({dst})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_cycles(graph):
    """Tarjan's strongly connected components over every import, function-level ones too."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in graph:
                continue
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
                cycles.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_reports_and_store_never_import_torch_even_indirectly(graph):
    def reach(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for t in graph.get(todo.pop(), ()):
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        return seen

    for module in (m for m in graph if part_of(m) in NO_TORCH_PARTS):
        heavy = reach(module) & (TORCH_PACKAGES | {m for m in graph if part_of(m) in
                                                   ("methods", "train", "data")})
        assert not heavy, f"{module} reaches {sorted(heavy)}"


def test_importing_the_report_loads_no_torch_at_run_time():
    code = ("import sys, lionbench.report, lionbench.store, lionbench.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('torch', 'torchvision', 'timm', 'matplotlib')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_method_catalog_matches_the_registry():
    """Reports read defaults from lionbench/assets/methods.json; it must be the registry's."""
    from lionbench.methods import CATALOG_PATH, describe_methods

    assert json.loads(CATALOG_PATH.read_text()) == describe_methods(), (
        "lionbench/assets/methods.json is stale: run `python -m lionbench.methods`")


def test_the_check_itself_sees_function_level_and_upward_imports(tmp_path):
    """The graph must not miss an import because it hides in a function."""
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from lionbench.cli import app\n    import torch\n")
    found = imports_of("lionbench.store.mod", source, {"lionbench.cli", "lionbench.store"})
    assert found == {"lionbench.cli", "torch"}
