"""The walls between packages: built-in plugins see the harness only through `benchmarks.api`; `ltfm/` stands alone."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_builtin_plugins_import_only_the_declared_surface() -> None:
    offenders = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / "baselines").glob("*.py"))
        for module in _imported_modules(path)
        if (module == "benchmarks" or module.startswith("benchmarks.")) and module != "benchmarks.api"
    }
    assert offenders == set()


# The one place the harness may name a method: a dataset's calibration reference is part of the
# dataset's definition (SPEC 3.2: "a real pretrained PatchCore reads the test split at AUROC 0.80-0.95").
NAMES_A_METHOD_BY_DESIGN = {"benchmarks/reporting/calibration.py"}


def test_the_harness_names_no_method() -> None:
    """Colours, published numbers, ablations and figures come from what plugins declare, not from names in code."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    methods = set(re.findall(r'^([\w-]+) = "baselines\.', pyproject, re.M)) - {"anomalib"}
    assert {"patchcore", "ltfm"} <= methods
    pattern = re.compile(r"[\"'](" + "|".join(map(re.escape, methods)) + r")[\"']")
    offenders = {
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in sorted((ROOT / "benchmarks").rglob("*.py"))
        if str(path.relative_to(ROOT)) not in NAMES_A_METHOD_BY_DESIGN
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if pattern.search(line) and not line.lstrip().startswith(("#", '"""`', "`"))
    }
    assert offenders == set()


def test_no_method_plugin_imports_another() -> None:
    """Plugins share helper modules (`baselines/common.py`, ...), never each other's method module."""
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    plugins = set(re.findall(r'= "(baselines\.\w+):', pyproject))
    assert {"baselines.patchcore", "baselines.anomalib_adapter", "baselines.ltfm_plugin"} <= plugins
    offenders = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / "baselines").glob("*.py"))
        for module in _imported_modules(path)
        if module in plugins and module != f"baselines.{path.stem}"
    }
    assert offenders == set()


def test_the_ltfm_model_package_stands_alone() -> None:
    """`ltfm/` (model, towers, trainer, checkpoints) imports nothing of the suite: it can be copied out and used."""
    offenders = {
        f"{path.relative_to(ROOT)}: {module}"
        for path in sorted((ROOT / "ltfm").rglob("*.py"))
        for module in _imported_modules(path)
        if module.split(".")[0] in ("benchmarks", "baselines")
    }
    assert offenders == set()


def _import_graph(packages: tuple[str, ...]) -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its body (lazy imports included)."""
    modules: dict[str, Path] = {}
    for package in packages:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                graph[name].update(f"{node.module}.{a.name}" for a in node.names if f"{node.module}.{a.name}" in modules)
                if node.module in modules:
                    graph[name].add(node.module)
            elif isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name in modules)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of two or more modules (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_no_import_cycles_between_project_modules() -> None:
    assert _cycles(_import_graph(("benchmarks", "baselines", "ltfm"))) == []


def test_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_readme_plugin_example_uses_the_surface() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    imports = [line for line in readme.splitlines() if line.startswith(("from benchmarks", "import benchmarks"))]
    assert imports and all(line.startswith("from benchmarks.api import") for line in imports), imports


def test_the_scan_sees_nested_and_aliased_imports(tmp_path: Path) -> None:
    source = tmp_path / "plugin.py"
    source.write_text("import benchmarks.running.runner as r\n\ndef f():\n    from benchmarks.running.cell import run_cell\n")
    assert _imported_modules(source) == {"benchmarks.running.runner", "benchmarks.running.cell"}


def test_the_typed_boundaries_pass_mypy_strict() -> None:
    """`mypy` with the pyproject's settings (`--strict` on `benchmarks/api.py`, `plugins/`, `results/`)."""
    pytest.importorskip("mypy", reason="mypy comes with the dev extra")
    done = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(ROOT / ".mypy_cache")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
