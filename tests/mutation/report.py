"""Mutation score of the scoring path, per scope, from a finished `mutmut run` (issue 26).

Run from the repository root after `mutmut run ...` (`tox -e mutation` does both):

    python tests/mutation/report.py [--markdown OUT.md] [--scope LABEL ...]

Reads mutmut's per-file results (`mutants/**/*.py.meta`), groups the mutants into the scopes
below, prints killed / total per scope against its target, and lists every surviving mutant with
its change (`mutmut show`) and the reason recorded in `tests/mutation/survivors.toml`. The target
applies to the usual mutation score, killed / (measured - equivalent), where a survivor is
equivalent when its recorded reason starts with "equivalent"; the raw killed / measured is shown
beside it. Exits 1 when a scope misses its target or a survivor has no recorded reason; scopes
with mutants left unchecked are reported as partial, never as passing.

Counted as killed: a failing test run (mutmut exit 1 / 3), a timeout (the mutant made a test
hang) or a crashed test process (mutmut's "segfault": e.g. faiss given a null quantizer). Not counted at all: mutants never run ("not checked"). "No tests" (no selected test
executes the function) counts as surviving.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
SURVIVORS = Path(__file__).with_name("survivors.toml")

KILLED = {1, 3, 24, -24, 36, 152, 255, -11, -9}  # test failure, pytest error, timeouts, a crashed test process


@dataclass(frozen=True)
class Scope:
    label: str
    target: float
    patterns: tuple[str, ...]


def _methods(module: str, cls: str, *names: str) -> tuple[str, ...]:
    return tuple(f"{module}.xǁ{cls}ǁ{name}__mutmut_*" for name in names)


def _functions(module: str, *names: str) -> tuple[str, ...]:
    return tuple(f"{module}.x_{name}__mutmut_*" for name in names)


SAVE_LOAD = ("fitted_state", "load_fitted_state")
SCOPES = (
    Scope("benchmarks/metrics/ (every module)", 0.90, ("benchmarks.metrics.*",)),
    Scope("threshold rule (benchmarks/metrics/threshold.py)", 0.90, ("benchmarks.metrics.threshold.*",)),
    Scope("benchmarks/plugins/gemm_path.py", 0.90, ("benchmarks.plugins.gemm_path.*",)),
    Scope("baselines/neighbours.py", 0.90, ("baselines.neighbours.*",)),
    Scope("cell split handling (select_train, cap_eval, _cap)", 0.90,
          _functions("benchmarks.running.cell", "select_train", "cap_eval", "_cap")),
    Scope("save/load: shared helpers (baselines/common.py)", 0.80,
          _functions("baselines.common", "frozen_module_state", "restore_frozen_module")),
    Scope("save/load: patchcore", 0.80, _methods("baselines.patchcore", "PatchCore", *SAVE_LOAD)),
    Scope("save/load: dino-knn", 0.80, _methods("baselines.dino_knn", "DinoKnn", *SAVE_LOAD)),
    Scope("save/load: winclip", 0.80, _methods("baselines.winclip", "WinClip", *SAVE_LOAD)),
    Scope("save/load: anomalygpt", 0.80, _methods("baselines.anomalygpt", "AnomalyGPT", *SAVE_LOAD)),
    Scope("save/load: ltfm", 0.80, _methods("baselines.ltfm_plugin", "LTFMBaseline", *SAVE_LOAD)),
    Scope("scoring: patchcore", 0.80, _methods("baselines.patchcore", "PatchCore", "predict", "patch_scores",
                                               "_reweighted_scores")),
    Scope("scoring: dino-knn", 0.80, _methods("baselines.dino_knn", "DinoKnn", "predict", "_maps", "_input")
          + _functions("baselines.dino_knn", "resized_shape", "mean_top_fraction", "first_principal_component",
                       "orient_foreground", "dilate_then_close", "token_foreground_mask")),
    Scope("scoring: winclip", 0.80, _methods("baselines.winclip", "WinClip", "predict")),
    Scope("scoring: anomalygpt", 0.80, _methods("baselines.anomalygpt", "AnomalyGPT", "predict", "anomaly_maps",
                                                "_map", "_fewshot_map")
          + _methods("baselines.anomalygpt", "ImageDecoder", "forward")),
    Scope("scoring: ltfm", 0.80, _methods("baselines.ltfm_plugin", "LTFMBaseline", "predict", "_region")),
    Scope("scoring: shared map smoothing (gaussian_blur_maps)", 0.80,
          _functions("baselines.common", "gaussian_blur_maps")),
)


@dataclass
class Tally:
    killed: int = 0
    survived: list[str] = field(default_factory=list)
    not_checked: int = 0

    @property
    def measured(self) -> int:
        return self.killed + len(self.survived)

    @property
    def score(self) -> float | None:
        return self.killed / self.measured if self.measured else None


def results(root: Path | None = None) -> dict[str, int | None]:
    """Every mutant's mutmut exit code (None: not run yet), under `root` (default: the repository)."""
    out: dict[str, int | None] = {}
    for meta in sorted(((root or ROOT) / "mutants").rglob("*.py.meta")):
        out |= json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"]
    return out


def tally(scope: Scope, codes: dict[str, int | None]) -> Tally:
    t = Tally()
    for name, code in sorted(codes.items()):
        if not any(fnmatch.fnmatchcase(name, p) for p in scope.patterns):
            continue
        if code is None:
            t.not_checked += 1
        elif code in KILLED:
            t.killed += 1
        else:  # survived, no tests, or anything unclassified (suspicious, type check): never a kill
            t.survived.append(name)
    return t


def change(name: str) -> str:
    """The mutated line(s) as `mutmut show` prints them."""
    shown = subprocess.run([sys.executable, "-m", "mutmut", "show", name], capture_output=True, text=True,
                           cwd=ROOT, check=False).stdout
    lines = [line for line in shown.splitlines() if line[:2] in ("- ", "+ ")]
    return " / ".join(line.strip() for line in lines) or "(no diff shown)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    parser.add_argument("--scope", action="append", help="only scopes whose label contains this")
    args = parser.parse_args(argv)
    codes = results()
    reasons: dict[str, str] = tomllib.loads(SURVIVORS.read_text(encoding="utf-8")) if SURVIVORS.exists() else {}
    scopes = [s for s in SCOPES if not args.scope or any(x in s.label for x in args.scope)]
    lines = ["| scope | killed / measured | score | equivalent | score without them | target | not run |",
             "|---|---|---|---|---|---|---|"]
    failed = False
    survivors: dict[str, None] = {}
    for scope in scopes:
        t = tally(scope, codes)
        if t.measured == 0 and t.not_checked == 0:
            lines.append(f"| {scope.label} | no mutants found | | | | {scope.target:.0%} | |")
            failed = True
            continue
        score = "-" if t.score is None else f"{t.score:.1%}"
        # the usual mutation score: equivalent mutants (the recorded reason says so) cannot be killed
        equivalent = sum(1 for name in t.survived if reasons.get(name, "").startswith("equivalent"))
        net = t.killed / (t.measured - equivalent) if t.measured > equivalent else None
        net_text = "-" if net is None else f"{net:.1%}"
        partial = f"{t.not_checked} (partial)" if t.not_checked else "0"
        lines.append(f"| {scope.label} | {t.killed} / {t.measured} | {score} | {equivalent} | {net_text} | "
                     f"{scope.target:.0%} | {partial} |")
        failed |= net is not None and net < scope.target
        survivors |= dict.fromkeys(t.survived)
    lines += ["", "| surviving mutant | change | why it survives |", "|---|---|---|"]
    for name in survivors:
        reason = reasons.get(name)
        failed |= reason is None
        lines.append(f"| `{name}` | `{change(name)}` | {reason or '**no reason recorded**'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
