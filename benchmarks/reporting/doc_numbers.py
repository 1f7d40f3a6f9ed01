"""Numbers in the docs that come from the stored reference run, written and checked from it.

A number in README.md or docs/*.md is tied to the reference run (`docs/reference-run/`) by an HTML
comment right after it, invisible in rendered Markdown:

    0.839<!--ref patchcore/default metrics.image_auroc .3f-->
    32.5<!--ref run wall_minutes .1f-->

The tag names a cell (`method/variant`, seed 0 of the run's one dataset, or `method/variant@seed`)
or `run` (the run's `run.json`, plus `wall_minutes` from the first cell's start to the last's end, `n_cells`, `date`), then a dotted path into the
cell's `runs.jsonl` line (list items by index: `metrics.image_auroc_ci.0`) and a format spec. A
subject `NAME:...` reads another stored run, `docs/reference-run-NAME/` (the data-import
walkthrough's run is `study:`); a subject ending in `.json` reads that file of the stored run (the
QC page's JSON, `inspect/qc-patchcore-default.json`).
`check` lists every tagged number that differs from what the store gives, and every tag whose
value the store lacks; `write` rewrites the numbers in place (the one command after a new
reference run). A doc number cannot drift: a test runs `check` over the repository's docs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

TAG = re.compile(r"(?P<value>[0-9]{4}-[0-9]{2}-[0-9]{2}|[-+]?[0-9][0-9,]*(?:\.[0-9]+)?%?|n/a)"
                 r"<!--ref (?P<subject>\S+) (?P<path>\S+) (?P<format>\S+)-->")
REFERENCE_RUN = Path("docs") / "reference-run"


@dataclass(frozen=True)
class DocNumberProblem:
    file: str
    line: int
    text: str
    expected: str | None
    why: str

    def __str__(self) -> str:
        want = f" (the reference run says {self.expected})" if self.expected is not None else ""
        return f"{self.file}:{self.line}: {self.text}: {self.why}{want}"


class ReferenceRun:
    """The stored reference run: its cells by `method/variant@seed` and its `run.json`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.cells: dict[str, Mapping[str, Any]] = {}
        for line in (folder / "runs.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                cell = json.loads(line)
                self.cells[f"{cell['method']}/{cell['variant']}@{cell.get('seed', 0)}"] = cell
        self.run: dict[str, Any] = json.loads((folder / "run.json").read_text(encoding="utf-8"))
        self.run.setdefault("n_cells", len(self.cells))
        finished = [c.get("finished_at") for c in self.cells.values() if c.get("finished_at")]
        started = [c.get("started_at") for c in self.cells.values() if c.get("started_at")]
        if finished and started:
            span = datetime.fromisoformat(max(finished)) - datetime.fromisoformat(min(started))
            self.run.setdefault("wall_minutes", span.total_seconds() / 60)
            self.run.setdefault("date", max(finished)[:10])

    @staticmethod
    def folder_of(root: Path, name: str | None) -> Path:
        return root / REFERENCE_RUN if name is None else root / "docs" / f"reference-run-{name}"

    def value(self, subject: str, path: str) -> object:
        """The stored value, or KeyError naming what is missing."""
        if subject == "run":
            node: Any = self.run
        elif subject.endswith(".json"):
            path_in_run = (self.folder / subject).resolve()
            if not path_in_run.is_relative_to(self.folder.resolve()) or not path_in_run.is_file():
                raise KeyError(f"no file {subject} in the stored run")
            node = json.loads(path_in_run.read_text(encoding="utf-8"))
        else:
            key = subject if "@" in subject else f"{subject}@0"
            if key not in self.cells:
                raise KeyError(f"no cell {key} in the reference run")
            node = self.cells[key]
        for part in path.split("."):
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif isinstance(node, Mapping) and part in node:
                node = node[part]
            else:
                raise KeyError(f"{subject} has no {path}")
        return node


def render(value: object, spec: str) -> str:
    """The stored value as the docs print it (`n/a` for a missing number)."""
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    return format(value, spec)


class References:
    """The stored runs a doc may quote, loaded on first use."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.runs: dict[str | None, ReferenceRun] = {}

    def value(self, subject: str, path: str) -> object:
        name, _, rest = subject.rpartition(":") if ":" in subject else (None, "", subject)
        if name not in self.runs:
            folder = ReferenceRun.folder_of(self.root, name or None)
            if not (folder / "runs.jsonl").is_file():
                raise KeyError(f"no stored run {folder.relative_to(self.root)}")
            self.runs[name] = ReferenceRun(folder)
        return self.runs[name].value(rest, path)


def _scan(text: str, reference: References, name: str) -> tuple[str, list[DocNumberProblem]]:
    problems: list[DocNumberProblem] = []

    def replace(match: re.Match[str]) -> str:
        line = text.count("\n", 0, match.start()) + 1
        try:
            expected = render(reference.value(match["subject"], match["path"]), match["format"])
        except (KeyError, ValueError, TypeError) as exc:
            problems.append(DocNumberProblem(name, line, match.group(0), None, f"cannot be read: {exc}"))
            return match.group(0)
        if expected != match["value"]:
            problems.append(DocNumberProblem(name, line, match.group(0), expected, "differs"))
        return f"{expected}<!--ref {match['subject']} {match['path']} {match['format']}-->"

    return TAG.sub(replace, text), problems


def doc_files(root: Path) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def check(root: Path, files: Iterable[Path] | None = None) -> list[DocNumberProblem]:
    """Every tagged number of the docs that the reference run does not give exactly."""
    reference = References(root)
    problems: list[DocNumberProblem] = []
    for path in files or doc_files(root):
        problems += _scan(path.read_text(encoding="utf-8"), reference, path.relative_to(root).as_posix())[1]
    return problems


def write(root: Path, files: Iterable[Path] | None = None) -> int:
    """Rewrite every tagged number from the reference run; returns how many changed. Tags the run
    cannot answer are left as they are (and `check` names them)."""
    reference = References(root)
    changed = 0
    for path in files or doc_files(root):
        text = path.read_text(encoding="utf-8")
        new, problems = _scan(text, reference, path.relative_to(root).as_posix())
        changed += sum(p.expected is not None for p in problems)
        if new != text:
            path.write_text(new, encoding="utf-8")
    return changed


def count_tags(root: Path) -> int:
    return sum(len(TAG.findall(p.read_text(encoding="utf-8"))) for p in doc_files(root))


STORED = ("runs.jsonl", "run.json", "report.md")
STORED_FOLDERS = ("scores", "tables", "inspect")
"""What `store` keeps of a run: its records, configuration and hardware, report, per-image scores
and tables, and `inspect/`'s QC-page JSON (not the maps, models or pages: the docs quote none of them)."""


def store(run_dir: Path, root: Path, name: str | None = None) -> Path:
    """Make `run_dir` the reference run (or the stored run `name`): copy what the docs read into
    `docs/reference-run[-NAME]/` (replacing the previous one), its figures' PNGs into `figures/` there."""
    import shutil

    target = ReferenceRun.folder_of(root, name)
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for name in STORED:
        if (run_dir / name).is_file():
            shutil.copyfile(run_dir / name, target / name)
    for folder in STORED_FOLDERS:
        if (run_dir / folder).is_dir():  # the QC page's JSON, not its HTML (every image embedded)
            shutil.copytree(run_dir / folder, target / folder, ignore=shutil.ignore_patterns("*.html"))
    if (run_dir / "figures").is_dir():
        (target / "figures").mkdir()
        for png in sorted((run_dir / "figures").glob("*.png")):
            shutil.copyfile(png, target / "figures" / png.name)
    return target
