"""The walls between packages: built-in plugins see the harness only through `benchmarks.api`."""

from __future__ import annotations

import ast
from pathlib import Path

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


def test_readme_plugin_example_uses_the_surface() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    imports = [line for line in readme.splitlines() if line.startswith(("from benchmarks", "import benchmarks"))]
    assert imports and all(line.startswith("from benchmarks.api import") for line in imports), imports


def test_the_scan_sees_nested_and_aliased_imports(tmp_path: Path) -> None:
    source = tmp_path / "plugin.py"
    source.write_text("import benchmarks.runner as r\n\ndef f():\n    from benchmarks.cell import run_cell\n")
    assert _imported_modules(source) == {"benchmarks.runner", "benchmarks.cell"}
