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
    "core": 5,  # lionbench/__init__, config, errors, settings, text, catalog, deq, robust,
}               # backbones, matrix, files
CORE_MODULES = {"lionbench", "lionbench.config", "lionbench.errors", "lionbench.settings",
                "lionbench.text", "lionbench.catalog", "lionbench.deq", "lionbench.robust",
                "lionbench.backbones", "lionbench.matrix", "lionbench.files"}
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
    if module == "lionbench.__main__":  # `python -m lionbench`: the CLI's entry point
        return "cli"
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
    # the CLI's checks of every input (lionbench.cli.inputs and what it calls) run before
    # torch loads: they must not import it either
    code = ("import sys, lionbench.report, lionbench.store, lionbench.cli, lionbench.cli.inputs, "
            "lionbench.catalog, lionbench.executors, lionbench.executors.gpus, "
            "lionbench.perf.preset, lionbench.matrix, lionbench.settings; "
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


def test_backbone_and_dataset_catalogs_match_the_registries():
    """The CLI checks names against lionbench/assets/{backbones,datasets}.json before torch
    loads: they must be the registries' (timm's names when its version is the catalog's)."""
    from lionbench.backbones import describe_backbone_names
    from lionbench.catalog import ASSETS
    from lionbench.data.names import describe_dataset_names

    assert json.loads((ASSETS / "backbones.json").read_text()) == describe_backbone_names(), (
        "lionbench/assets/backbones.json is stale: run `python -m lionbench.backbones`")
    assert json.loads((ASSETS / "datasets.json").read_text()) == describe_dataset_names(), (
        "lionbench/assets/datasets.json is stale: run `python -m lionbench.data`")


def declared_distributions() -> set[str]:
    """Distribution names in pyproject.toml's dependencies and optional dependencies."""
    import re

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    return {re.split(r"[<>=!~;\[ ]", s, maxsplit=1)[0].strip().lower().replace("_", "-")
            for s in specs}


def test_every_third_party_import_is_a_declared_dependency(graph):
    """A package imported by lionbench (anywhere, function-level included) but not declared
    would work here by accident (another package pulled it in) and break an install."""
    import importlib.metadata

    owners = importlib.metadata.packages_distributions()
    declared = declared_distributions()
    imported = {t for targets in graph.values() for t in targets
                if not t.startswith("lionbench") and t not in sys.stdlib_module_names
                and t != "__future__"}
    missing = {}
    for top in sorted(imported):
        dists = {d.lower().replace("_", "-") for d in owners.get(top, [top])}
        if not dists & declared:
            missing[top] = sorted(dists)
    assert not missing, f"imported but not declared in pyproject.toml: {missing}"


def test_no_private_typer_module_and_typer_bounded():
    for path in module_files().values():
        assert "typer._" not in path.read_text(), path
    deps = (ROOT / "pyproject.toml").read_text()
    assert '"typer>=0.28,<0.30"' in deps  # vendored click, public TyperException; tested on 0.29


def test_no_path_of_a_development_machine_in_committed_files():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split()
    found = []
    for name in files:
        if name.startswith("tests/") or not name.endswith((".md", ".py", ".yaml", ".yml",
                                                          ".txt", ".toml", ".cff", ".json")):
            continue
        text = (ROOT / name).read_text(errors="replace")
        for needle in ("/work/", "/root/", "/tmp/", "/home/"):
            if needle in text:
                found.append(f"{name}: {needle}")
    assert not found, found


def test_license_and_python_dash_m():
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    out = subprocess.run([sys.executable, "-m", "lionbench", "--version"], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.startswith("lionbench "), out.stderr


def test_the_check_itself_sees_function_level_and_upward_imports(tmp_path):
    """The graph must not miss an import because it hides in a function."""
    source = tmp_path / "mod.py"
    source.write_text("def f():\n    from lionbench.cli import app\n    import torch\n")
    found = imports_of("lionbench.store.mod", source, {"lionbench.cli", "lionbench.store"})
    assert found == {"lionbench.cli", "torch"}
