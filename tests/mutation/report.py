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
import ast
import fnmatch
import hashlib
import json
import math
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

ROOT = Path(__file__).resolve().parents[2]
SURVIVORS = Path(__file__).with_name("survivors.toml")
SCORES = Path(__file__).with_name("scores.json")
DOCS = ROOT / "docs" / "mutation-testing.md"
DOCS_START, DOCS_END = "<!-- mutation-scores:start -->", "<!-- mutation-scores:end -->"

KILLED = {1, 3, 24, -24, 36, 152, 255, -11, -9}  # test failure, pytest error, timeouts, a crashed test process


@dataclass(frozen=True)
class Scope:
    label: str
    target: float
    patterns: tuple[str, ...]
    runner: str = "mutmut"  # or "constants": tests/mutation/constants.py measures it
    sample: int = 0  # 0: every mutant; else a seeded random sample of this many (large modules)


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
    Scope("metrics: pixel accumulator and pixel_metrics (changed since the metrics scope's run)", 0.90,
          _methods("benchmarks.metrics.pixel", "PixelAccumulator", "__init__", "add", "sample", "result")
          + _functions("benchmarks.metrics.pixel", "pixel_metrics")),
    # outside the scoring path
    Scope("importer: split rule (split_rule.py)", 0.80, ("benchmarks.data.importer.split_rule.*",), sample=200),
    Scope("importer: study protocol: years, generated, hard negatives, ROI (protocol.py)", 0.80,
          ("benchmarks.data.importer.protocol.*",)),
    Scope("importer: annotation readers and masks (annotations.py)", 0.80, ("benchmarks.data.importer.annotations.*",), sample=150),
    Scope("importer: layouts (layouts.py)", 0.80, ("benchmarks.data.importer.layouts.*",), sample=150),
    Scope("importer: files, checks, writer, pipeline", 0.80,
          tuple(f"benchmarks.data.importer.{m}.*" for m in ("items", "checking", "writer", "pipeline")), sample=100),
    Scope("manifest validation (manifest.py)", 0.80, ("benchmarks.data.manifest.*",), sample=100),
    Scope("embedded set's split plan (plan_dataset, scaled_counts)", 0.80,
          _functions("benchmarks.data.smartphone.generate", "scaled_counts", "plan_dataset", "_balanced",
                     "_balanced_designs"), sample=80),
    Scope("embedded set's protocol constants (years, counts, kinds, body width)", 0.80, (), runner="constants"),
    Scope("reporting: statistics across seeds and methods (statistics.py)", 0.90,
          ("benchmarks.reporting.statistics.*",), sample=150),
    Scope("reporting: result tables' columns (result_tables.py)", 0.80, ("benchmarks.reporting.result_tables.*",), sample=100),
    Scope("reporting: figures' confidence intervals (whiskers, bars, known vs unseen)", 0.80,
          _functions("benchmarks.reporting.figures.common", "whiskers", "chance_level")
          + ("benchmarks.reporting.figures.bars.*", "benchmarks.reporting.figures.known_unseen.*"), sample=100),
    Scope("weights: resolution order and stamps (weights.py, stamp.py)", 0.80,
          ("benchmarks.plugins.weights.*", "benchmarks.results.stamp.*"), sample=100),
    Scope("latency summaries (latency.py)", 0.90, ("benchmarks.running.latency.*",)),
    Scope("ltfm trainer: loss, schedule, early stopping (ltfm/trainer.py)", 0.80,
          _functions("ltfm.trainer", "warmup_cosine", "focal_loss", "ltfm_loss", "image_scores", "evaluate",
                     "_scores_and_maps", "selection_key", "train_ltfm", "map_targets", "schedule")
          + _methods("ltfm.trainer", "TrainConfig", "__post_init__"), sample=100),
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


def _in_scope(name: str, scope: Scope) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in scope.patterns)


def scope_mutants(scope: Scope, codes: dict[str, int | None]) -> list[str]:
    """The scope's mutants that count: all of them, or its pseudo-random sample (by hash with the label,
    so the same code gives the same sample)."""
    names = sorted(name for name in codes if _in_scope(name, scope))
    if scope.sample and len(names) > scope.sample:
        # a mutant is in the sample when its hash with the label is among the `sample` smallest: a
        # pseudo-random choice that stays put when mutants elsewhere in the scope appear or vanish
        names = sorted(sorted(names, key=lambda n: hashlib.sha256(f"{scope.label}:{n}".encode()).digest())
                       [:scope.sample])
    return names


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a proportion k / n (the score of a sampled scope)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def tally(scope: Scope, codes: dict[str, int | None]) -> Tally:
    t = Tally()
    for name in scope_mutants(scope, codes):
        code = codes[name]
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


def function_of(mutant: str) -> tuple[str, str]:
    """(module, qualified name) of the function a mutant lives in.

    `a.b.x_f__mutmut_3` -> ("a.b", "f"); `a.b.xǁCǁm__mutmut_1` -> ("a.b", "C.m")."""
    head = mutant.rpartition("__mutmut_")[0]
    module, _, name = head.rpartition(".")
    if name.startswith("xǁ"):
        return module, ".".join(name[2:].split("ǁ"))
    return module, name.removeprefix("x_")


def _mutant_name(module: str, qualname: str) -> str:
    """A mutant name of that function, for matching scope patterns."""
    if "." in qualname:
        cls, method = qualname.split(".", 1)
        return f"{module}.xǁ{cls}ǁ{method}__mutmut_1"
    return f"{module}.x_{qualname}__mutmut_1"


def module_path(module: str) -> str:
    return module.replace(".", "/") + ".py"


def functions_in(source: str) -> dict[str, str]:
    """Qualified name -> source text of every top-level function and method that mutmut mutates (it leaves
    decorated ones alone)."""
    found: dict[str, str] = {}
    for node in ast.parse(source).body:
        members = node.body if isinstance(node, ast.ClassDef) else [node]
        prefix = f"{node.name}." if isinstance(node, ast.ClassDef) else ""
        for sub in members:
            if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef) and not sub.decorator_list:
                found[prefix + sub.name] = ast.get_source_segment(source, sub) or ""
    return found


def constants_in(source: str) -> dict[str, str]:
    """Name -> source text of every top-level assignment to an UPPER_CASE name."""
    found: dict[str, str] = {}
    for node in ast.parse(source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        for target in targets:
            if isinstance(target, ast.Name) and target.id.isupper():
                found[target.id] = ast.get_source_segment(source, node) or ""
    return found


def source_hashes(functions: set[tuple[str, str]], root: Path | None = None) -> dict[str, str]:
    """`module:qualname` -> short sha256 of the function's (or constant's) source as it is now (missing: "")."""
    out: dict[str, str] = {}
    by_module: dict[str, list[str]] = {}
    for module, name in functions:
        by_module.setdefault(module, []).append(name)
    for module, names in by_module.items():
        path = (root or ROOT) / module_path(module)
        module_text = path.read_text(encoding="utf-8") if path.exists() else ""
        sources = constants_in(module_text) | functions_in(module_text) if module_text else {}
        for name in names:
            found = sources.get(name)
            out[f"{module}:{name}"] = hashlib.sha256(found.encode()).hexdigest()[:12] if found is not None else ""
    return dict(sorted(out.items()))


def scope_functions_now(scope: Scope, root: Path | None = None) -> set[tuple[str, str]]:
    """Every function the scope's patterns match in the current sources."""
    modules = {p.split(".x")[0].removesuffix(".*") for p in scope.patterns}
    found: set[tuple[str, str]] = set()
    for module in modules:
        path = (root or ROOT) / module_path(module)
        if not path.exists():
            continue
        for name in functions_in(path.read_text(encoding="utf-8")):
            if any(fnmatch.fnmatchcase(_mutant_name(module, name), p) for p in scope.patterns):
                found.add((module, name))
    return found


def changed_since(entry: dict[str, Any], scope: Scope, root: Path | None = None) -> list[str]:
    """Functions of the scope whose source differs from when its score was measured, or that are new."""
    stored: dict[str, str] = entry.get("functions", {})
    known = {(key.partition(":")[0], key.partition(":")[2]) for key in stored}
    now = source_hashes(known | scope_functions_now(scope, root), root)
    return sorted(key for key, digest in now.items() if stored.get(key) != digest)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT, check=False).stdout.strip()


def record(scope: Scope, t: Tally, equivalent: int, mutants: list[str], population: int) -> dict[str, Any] | str:
    """The stored entry for a measured scope (its unmeasured mutants counted as not run), or why it cannot be
    stored."""
    if not t.measured:
        return "no mutant measured yet"
    functions = {function_of(m) for m in mutants} | scope_functions_now(scope)  # with those without mutants
    files = sorted({module_path(m) for m, _ in functions})
    if _git("status", "--porcelain", "--", *files):
        return "its files have uncommitted changes: commit, run again, then record"
    return {"killed": t.killed, "measured": t.measured, "equivalent": equivalent, "target": scope.target,
            "commit": _git("rev-parse", "--short=12", "HEAD"), "date": _git("log", "-1", "--format=%cs"),
            "population": population, "not_run": t.not_checked, "mutmut": "3.8.1",
            "functions": source_hashes(functions)}


def load_scores(path: Path | None = None) -> dict[str, dict[str, Any]]:
    path = path or SCORES
    return json.loads(path.read_text(encoding="utf-8"))["scopes"] if path.exists() else {}


def save_scores(scores: dict[str, dict[str, Any]]) -> None:
    SCORES.write_text(json.dumps({"scopes": dict(sorted(scores.items()))}, indent=1) + "\n", encoding="utf-8")


def stored_table(scopes: list[Scope], scores: dict[str, dict[str, Any]]) -> tuple[list[str], bool]:
    """The stored score of every scope with the commit it was measured at and what changed since."""
    lines = ["| scope | killed / measured | score | equivalent | score without them | target | measured at | "
             "code changed since |", "|---|---|---|---|---|---|---|---|"]
    failed = False
    for scope in scopes:
        entry = scores.get(scope.label)
        if entry is None:
            lines.append(f"| {scope.label} | not measured | | | | {scope.target:.0%} | | |")
            failed = True
            continue
        killed, measured, equivalent = entry["killed"], entry["measured"], entry["equivalent"]
        net = killed / (measured - equivalent) if measured > equivalent else 1.0
        changed = changed_since(entry, scope)
        failed |= net < scope.target or bool(changed) or bool(entry.get("not_run"))
        since = "nothing" if not changed else "**" + ", ".join(f"`{c}`" for c in changed) + "**"
        population = entry.get("population", measured)
        counted = f"{killed} / {measured}"
        net_text = f"{net:.1%}"
        if population > measured + entry.get("not_run", 0):  # a random sample: an estimate, with its interval
            lo, hi = wilson(killed, measured - equivalent)
            counted += f" (random sample of {population:,})"
            net_text += f" [{lo:.1%}, {hi:.1%}]"
        if entry.get("not_run"):  # a partial run: the rest of the scope (or of its sample) was not measured
            counted += f" ({entry['not_run']} not run)"
        lines.append(f"| {scope.label} | {counted} | {killed / measured:.1%} | {equivalent} | "
                     f"{net_text} | {scope.target:.0%} | {entry['commit']} ({entry['date']}) | {since} |")
    return lines, failed


def with_score_table(doc: str, table: str) -> str:
    """`doc` with the text between its score-table markers replaced by `table`."""
    before, start, rest = doc.partition(DOCS_START)
    _, end, after = rest.partition(DOCS_END)
    if not start or not end:
        raise SystemExit(f"{DOCS}: the markers {DOCS_START} ... {DOCS_END} are missing")
    return f"{before}{DOCS_START}\n{table}{DOCS_END}{after}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    parser.add_argument("--scope", action="append", help="only scopes whose label contains this")
    parser.add_argument("--record", action="store_true",
                        help=f"store each fully measured scope's score, commit and function hashes in {SCORES.name}")
    parser.add_argument("--stored", action="store_true",
                        help=f"report the scores stored in {SCORES.name} (no mutmut results needed)")
    parser.add_argument("--names", metavar="SCOPE",
                        help="print the mutant names of the scopes whose label contains SCOPE (their sample where "
                             "sampled), for `mutmut run`")
    parser.add_argument("--pending", action="store_true", help="with --names: only mutants not run yet")
    parser.add_argument("--write-docs", action="store_true",
                        help="with --stored: rewrite the score table in docs/mutation-testing.md")
    args = parser.parse_args(argv)
    scopes = [s for s in SCOPES if not args.scope or any(x in s.label for x in args.scope)]
    if args.names:
        codes = results()
        for scope in SCOPES:
            if args.names in scope.label and scope.runner == "mutmut":
                for name in scope_mutants(scope, codes):
                    if not args.pending or codes[name] is None:
                        print(name)
        return 0
    reasons: dict[str, str] = tomllib.loads(SURVIVORS.read_text(encoding="utf-8")) if SURVIVORS.exists() else {}
    if args.stored:
        lines, failed = stored_table(scopes, load_scores())
        text = "\n".join(lines) + "\n"
        print(text)
        if args.write_docs:
            DOCS.write_text(with_score_table(DOCS.read_text(encoding="utf-8"), text), encoding="utf-8")
        if args.markdown:
            args.markdown.write_text(text, encoding="utf-8")
        return 1 if failed else 0
    codes = results()
    lines = ["| scope | killed / measured | score | equivalent | score without them | target | not run |",
             "|---|---|---|---|---|---|---|"]
    failed = False
    survivors: dict[str, None] = {}
    scores = load_scores()
    recorded: list[str] = []
    for scope in scopes:
        if scope.runner != "mutmut":
            lines.append(f"| {scope.label} | measured by tests/mutation/{scope.runner}.py (see --stored) | | | | "
                         f"{scope.target:.0%} | |")
            continue
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
        if args.record and t.measured:
            every = [m for m in codes if _in_scope(m, scope)]
            entry = record(scope, t, equivalent, every, len(every))
            if isinstance(entry, str):
                recorded.append(f"not recorded: {scope.label}: {entry}")
            else:
                scores[scope.label] = entry
                recorded.append(f"recorded: {scope.label} at {entry['commit']}")
    lines += ["", "| surviving mutant | change | why it survives |", "|---|---|---|"]
    for name in survivors:
        reason = reasons.get(name)
        failed |= reason is None
        lines.append(f"| `{name}` | `{change(name)}` | {reason or '**no reason recorded**'} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.record:
        save_scores(scores)
        print("\n".join(recorded))
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
