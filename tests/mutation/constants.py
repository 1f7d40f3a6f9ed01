"""Mutation testing of the embedded set's protocol constants, which mutmut cannot mutate.

mutmut mutates function bodies only; the smartphone-synth protocol lives in module-level constants
(the train and test years, the counts per split and source, the defect and hard-negative kinds, the
body width that sets millimetres). Each mutant below replaces one exact text in one file of a copy
of the repository and runs the tests that guard the protocol there (`pytest -x`); a failing run
kills it. Run from the repository root:

    python tests/mutation/constants.py [--record]

`--record` stores the scope's score in `tests/mutation/scores.json`, with the commit and a hash of
each constant's source (as `report.py --record` does for mutmut's scopes); a survivor needs a
reason in `tests/mutation/survivors.toml` under its mutant id (`constants.<id>`).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCOPE = "embedded set's protocol constants (years, counts, kinds, body width)"
TESTS = ("tests/test_smartphone_synth.py", "tests/test_cell_splits.py")
COPIED = ("benchmarks", "baselines", "ltfm", "tests", "docs", "pyproject.toml")

GENERATE = "benchmarks/data/smartphone/generate.py"
DESIGNS = "benchmarks/data/smartphone/designs.py"
DEFECTS = "benchmarks/data/smartphone/defects.py"
RENDER = "benchmarks/data/smartphone/render.py"


@dataclass(frozen=True)
class ConstantMutant:
    id: str
    path: str
    constant: str
    old: str
    new: str


def _count(split: str, source: str, field: str, value: int, new: int) -> ConstantMutant:
    line = {("train", "real"): 'SplitCounts(normal=150, hard_negative=15, anomaly=40)',
            ("train", "generated"): 'SplitCounts(normal=20, hard_negative=20, anomaly=60)',
            ("val", "real"): 'SplitCounts(normal=40, hard_negative=8, anomaly=30)',
            ("test", "real"): 'SplitCounts(normal=80, hard_negative=20, anomaly=80)'}[split, source]
    return ConstantMutant(f"counts-{split}-{source}-{field}-{new}", GENERATE, "DEFAULT_COUNTS",
                          f'("{split}", "{source}"): {line}',
                          f'("{split}", "{source}"): {line.replace(f"{field}={value}", f"{field}={new}")}')


MUTANTS: tuple[ConstantMutant, ...] = (
    ConstantMutant("train-years-from-2018", GENERATE, "TRAIN_YEARS",
                   "TRAIN_YEARS = tuple(range(2017, 2024))", "TRAIN_YEARS = tuple(range(2018, 2024))"),
    ConstantMutant("train-years-into-2024", GENERATE, "TRAIN_YEARS",
                   "TRAIN_YEARS = tuple(range(2017, 2024))", "TRAIN_YEARS = tuple(range(2017, 2025))"),
    ConstantMutant("test-years-2025-only", GENERATE, "TEST_YEARS",
                   "TEST_YEARS = (2024, 2025)", "TEST_YEARS = (2025,)"),
    ConstantMutant("test-years-from-2023", GENERATE, "TEST_YEARS",
                   "TEST_YEARS = (2024, 2025)", "TEST_YEARS = (2023, 2024, 2025)"),
    *(_count(split, source, field, value, new) for split, source, field, value, new in (
        ("train", "real", "normal", 150, 151), ("train", "real", "hard_negative", 15, 14),
        ("train", "real", "anomaly", 40, 41),
        ("train", "generated", "normal", 20, 21), ("train", "generated", "hard_negative", 20, 19),
        ("train", "generated", "anomaly", 60, 59),
        ("val", "real", "normal", 40, 35), ("val", "real", "hard_negative", 8, 9), ("val", "real", "anomaly", 30, 35),
        ("test", "real", "normal", 80, 81), ("test", "real", "hard_negative", 20, 21),
        ("test", "real", "anomaly", 80, 79))),
    ConstantMutant("years-to-2024", DESIGNS, "YEARS", "YEARS = tuple(range(2017, 2026))",
                   "YEARS = tuple(range(2017, 2025))"),
    ConstantMutant("models-per-year-2", DESIGNS, "MODELS_PER_YEAR", "MODELS_PER_YEAR = 3", "MODELS_PER_YEAR = 2"),
    ConstantMutant("defect-kinds-without-mura", DEFECTS, "DEFECT_KINDS",
                   'DEFECT_KINDS = ("scratch", "crack", "burn_in", "dead_pixels", "dent", "mura")',
                   'DEFECT_KINDS = ("scratch", "crack", "burn_in", "dead_pixels", "dent")'),
    ConstantMutant("hard-negatives-without-protector-edge", DEFECTS, "HARD_NEGATIVE_KINDS",
                   'HARD_NEGATIVE_KINDS = ("smudge", "dust", "reflection", "protector_edge")',
                   'HARD_NEGATIVE_KINDS = ("smudge", "dust", "reflection")'),
    ConstantMutant("protocols-swapped", GENERATE, "DATASET_PROTOCOLS",
                   'DATASET_PROTOCOLS = {"smartphone-synth": "qc", "smartphone-synth-wild": "wild"}',
                   'DATASET_PROTOCOLS = {"smartphone-synth": "wild", "smartphone-synth-wild": "qc"}'),
    ConstantMutant("body-width-72.5", RENDER, "BODY_WIDTH_MM", "BODY_WIDTH_MM = 71.5", "BODY_WIDTH_MM = 72.5"),
)


def _report():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("mutation_report", Path(__file__).with_name("report.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _copy(to: Path) -> None:
    for name in COPIED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, to / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(source, to / name)


def _run(mutant: ConstantMutant, work: Path) -> tuple[bool, str, float]:
    """(killed, the first failing test or "", seconds) for one mutant, applied to `work` and undone."""
    path = work / mutant.path
    original = path.read_text(encoding="utf-8")
    if original.count(mutant.old) != 1:
        raise SystemExit(f"{mutant.id}: `{mutant.old}` is not exactly once in {mutant.path}")
    path.write_text(original.replace(mutant.old, mutant.new), encoding="utf-8")
    start = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *TESTS],
                              cwd=work, capture_output=True, text=True, check=False)
    finally:
        path.write_text(original, encoding="utf-8")
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAILED") or line.startswith("ERROR")]
    return done.returncode != 0, (failed[0] if failed else ""), time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="store the score in tests/mutation/scores.json")
    parser.add_argument("--only", help="run only mutants whose id contains this")
    args = parser.parse_args(argv)
    report = _report()
    reasons = report.tomllib.loads(report.SURVIVORS.read_text(encoding="utf-8"))
    mutants = [m for m in MUTANTS if not args.only or args.only in m.id]
    killed, survived = 0, []
    with tempfile.TemporaryDirectory(prefix="constant-mutants-") as tmp:
        work = Path(tmp)
        _copy(work)
        where = subprocess.run([sys.executable, "-c", "import benchmarks; print(benchmarks.__file__)"], cwd=work,
                               capture_output=True, text=True, check=True).stdout.strip()
        if not where.startswith(str(work)):
            raise SystemExit(f"the copy's tests would import {where}, not the mutated copy")
        for mutant in mutants:
            dead, failing, seconds = _run(mutant, work)
            killed += dead
            if not dead:
                survived.append(mutant)
            print(f"{'killed  ' if dead else 'SURVIVED'} {mutant.id} ({seconds:.0f} s) {failing}", flush=True)
    equivalent = sum(1 for m in survived if reasons.get(f"constants.{m.id}", "").startswith("equivalent"))
    unexplained = [m.id for m in survived if f"constants.{m.id}" not in reasons]
    measured = len(mutants)
    net = killed / (measured - equivalent) if measured > equivalent else 1.0
    print(f"{SCOPE}: {killed} / {measured} killed, {equivalent} equivalent, score without them {net:.1%}")
    for mutant_id in unexplained:
        print(f"no reason recorded for constants.{mutant_id}")
    if args.record and not args.only:
        files = sorted({m.path for m in MUTANTS})
        if report._git("status", "--porcelain", "--", *files):
            print("not recorded: the constants' files have uncommitted changes")
            return 1
        scores = report.load_scores()
        constants = {(m.path.removesuffix(".py").replace("/", "."), m.constant) for m in MUTANTS}
        scores[SCOPE] = {"killed": killed, "measured": measured, "equivalent": equivalent, "target": 0.8,
                         "commit": report._git("rev-parse", "--short=12", "HEAD"),
                         "date": report._git("log", "-1", "--format=%cs"), "mutmut": "tests/mutation/constants.py",
                         "functions": report.source_hashes(constants)}
        report.save_scores(scores)
        print(f"recorded: {SCOPE}")
    return 1 if unexplained or net < 0.8 else 0


if __name__ == "__main__":
    raise SystemExit(main())
