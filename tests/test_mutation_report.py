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
