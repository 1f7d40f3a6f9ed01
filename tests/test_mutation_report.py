"""The mutation-score report (`tests/mutation/report.py`) on a made-up mutmut result tree: scores,
unrun mutants, timeouts, survivors without a reason; and its scopes against mutmut's configuration."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _report() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mutation_report", ROOT / "tests" / "mutation" / "report.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _tree(root: Path, codes: dict[str, int | None]) -> None:
    meta = root / "mutants" / "benchmarks" / "metrics" / "threshold.py.meta"
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"exit_code_by_key": codes}))


def test_scores_count_kills_and_timeouts_and_leave_unrun_mutants_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _report()
    name = "benchmarks.metrics.threshold.x_choose_threshold__mutmut_{}"
    _tree(tmp_path, {name.format(1): 1, name.format(2): 36, name.format(3): 0, name.format(4): None,
                     name.format(5): 1, name.format(6): 33})
    scope = next(s for s in report.SCOPES if "threshold" in s.label)
    t = report.tally(scope, report.results(tmp_path))
    assert (t.killed, t.survived, t.not_checked) == (3, [name.format(3), name.format(6)], 1)
    assert t.score == pytest.approx(0.6)
    monkeypatch.setattr(report, "ROOT", tmp_path)
    monkeypatch.setattr(report, "change", lambda mutant: "- a / + b")
    monkeypatch.setattr(report, "SURVIVORS", tmp_path / "survivors.toml")
    assert report.main(["--scope", "threshold"]) == 1  # 60 % < 90 % and two survivors without reasons
    out = capsys.readouterr().out
    assert "| 3 / 5 | 60.0% | 0 | 60.0% | 90% | 1 (partial) |" in out and "**no reason recorded**" in out


def test_a_scope_with_explained_survivors_above_target_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    report = _report()
    name = "benchmarks.metrics.threshold.x_choose_threshold__mutmut_{}"
    # 8 of 10 killed (80 %); both survivors equivalent: 8 / 8 = 100 % against the 90 % target
    _tree(tmp_path, {name.format(i): 1 for i in range(1, 9)} | {name.format(9): 0, name.format(10): 0})
    (tmp_path / "survivors.toml").write_text(f'"{name.format(9)}" = "equivalent: scales F1"\n'
                                             f'"{name.format(10)}" = "equivalent: a default value"\n')
    monkeypatch.setattr(report, "ROOT", tmp_path)
    monkeypatch.setattr(report, "change", lambda mutant: "- a / + b")
    monkeypatch.setattr(report, "SURVIVORS", tmp_path / "survivors.toml")
    assert report.main(["--scope", "threshold"]) == 0


def test_every_scope_names_files_mutmut_mutates() -> None:
    report = _report()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    mutated = [p.removesuffix(".py").removesuffix("*").replace("/", ".") for p in config["only_mutate"]]
    for scope in report.SCOPES:
        for pattern in scope.patterns:
            assert any(pattern.startswith(m) for m in mutated), (scope.label, pattern)
    reasons = tomllib.loads(report.SURVIVORS.read_text(encoding="utf-8"))
    assert all(isinstance(v, str) and len(v) > 10 for v in reasons.values())


def test_a_mutant_name_names_its_function() -> None:
    report = _report()
    assert report.function_of("benchmarks.metrics.threshold.x_choose_threshold__mutmut_12") == (
        "benchmarks.metrics.threshold", "choose_threshold")
    assert report.function_of("benchmarks.running.cell.x__cap__mutmut_3") == ("benchmarks.running.cell", "_cap")
    assert report.function_of("baselines.neighbours.xǁNearestNeighbourIndexǁ__init____mutmut_81") == (
        "baselines.neighbours", "NearestNeighbourIndex.__init__")


def _module(root: Path, body: str) -> None:
    path = root / "pkg" / "mod.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(body)


def test_a_stored_score_goes_stale_when_its_code_changes_or_grows(tmp_path: Path) -> None:
    report = _report()
    scope = report.Scope("pkg", 0.8, ("pkg.mod.*",))
    _module(tmp_path, "def f(x):\n    return x + 1\n\n\nclass C:\n    def m(self):\n        return 2\n")
    functions = report.scope_functions_now(scope, tmp_path)
    assert functions == {("pkg.mod", "f"), ("pkg.mod", "C.m")}
    entry = {"functions": report.source_hashes(functions, tmp_path)}
    assert report.changed_since(entry, scope, tmp_path) == []
    _module(tmp_path, "def f(x):\n    return x + 2\n\n\nclass C:\n    def m(self):\n        return 2\n")
    assert report.changed_since(entry, scope, tmp_path) == ["pkg.mod:f"]
    _module(tmp_path, "def f(x):\n    return x + 1\n\n\nclass C:\n    def m(self):\n        return 2\n\n\n"
                      "def g():\n    return 0\n")
    assert report.changed_since(entry, scope, tmp_path) == ["pkg.mod:g"]  # new code nobody mutated
    _module(tmp_path, "def f(x):\n    return x + 1\n")
    assert report.changed_since(entry, scope, tmp_path) == ["pkg.mod:C.m"]  # gone: its hash is now ""


def test_the_stored_table_fails_on_a_missing_scope_or_a_missed_target(monkeypatch: pytest.MonkeyPatch) -> None:
    report = _report()
    scopes = [report.Scope("a", 0.8, ("nowhere.a.*",)), report.Scope("b", 0.9, ("nowhere.b.*",))]
    good = {"killed": 18, "measured": 20, "equivalent": 0, "commit": "abc", "date": "2026-12-06", "functions": {}}
    lines, failed = report.stored_table(scopes, {"a": good, "b": good})  # b: 90 % meets 90 %
    assert not failed and "| a | 18 / 20 | 90.0% | 0 | 90.0% | 80% | abc (2026-12-06) | nothing |" in lines
    _, failed = report.stored_table(scopes, {"a": good})
    assert failed
    _, failed = report.stored_table(scopes, {"a": good, "b": good | {"killed": 17}})
    assert failed


def test_the_docs_table_is_replaced_between_its_markers_only() -> None:
    report = _report()
    doc = f"intro\n{report.DOCS_START}\nold table\n{report.DOCS_END}\nafter\n"
    assert report.with_score_table(doc, "| new |\n") == f"intro\n{report.DOCS_START}\n| new |\n{report.DOCS_END}\nafter\n"


def test_every_scope_has_a_stored_score_and_the_docs_show_the_stored_table() -> None:
    """The mutation scores in docs/mutation-testing.md are the stored ones (`tests/mutation/scores.json`),
    each with the commit it was measured at and the functions changed since: editing a scoped function
    changes that column, so the docs must be regenerated (`report.py --stored --write-docs`) and then say so."""
    report = _report()
    scores = report.load_scores()
    assert set(scores) == {s.label for s in report.SCOPES}
    for scope in report.SCOPES:
        entry = scores[scope.label]
        assert len(entry["commit"]) == 12 and entry["functions"], scope.label
        if entry.get("not_run"):  # a partial run says so in the table; its score is not judged
            continue
        net = entry["killed"] / (entry["measured"] - entry["equivalent"])
        assert net >= scope.target, (scope.label, net)
    lines, _ = report.stored_table(list(report.SCOPES), scores)
    table = "\n".join(lines) + "\n"
    doc = report.DOCS.read_text(encoding="utf-8")
    assert report.with_score_table(doc, table) == doc, "run: python tests/mutation/report.py --stored --write-docs"
