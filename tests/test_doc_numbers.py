"""The docs' numbers come from the stored reference run (`docs/reference-run/`): every tagged number
in README.md and docs/*.md is what the store gives; an edited number fails; `docs write` restores it."""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.cli import REPO_ROOT, main
from benchmarks.reporting.doc_numbers import REFERENCE_RUN, TAG, check, count_tags, render, write


def test_every_tagged_doc_number_is_the_reference_runs() -> None:
    problems = check(REPO_ROOT)
    assert not problems, "\n".join(map(str, problems))
    assert count_tags(REPO_ROOT) >= 30  # the README's table and the pages quoting the run are tagged


def _copy_docs(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    shutil.copyfile(REPO_ROOT / "README.md", root / "README.md")
    for page in (REPO_ROOT / "docs").glob("*.md"):
        shutil.copyfile(page, root / "docs" / page.name)
    for stored in (REPO_ROOT / REFERENCE_RUN).parent.glob("reference-run*"):
        shutil.copytree(stored, root / "docs" / stored.name)
    return root


def test_a_planted_disagreement_fails_and_writing_fixes_it(tmp_path: Path) -> None:
    root = _copy_docs(tmp_path)
    readme = root / "README.md"
    text = readme.read_text()
    match = next(m for m in TAG.finditer(text) if m["value"][-1].isdigit())
    original = match["value"]
    edited = original[:-1] + ("1" if original[-1] != "1" else "2")
    start = match.start()
    readme.write_text(text[:start] + edited + text[match.end("value"):])
    problems = check(root)
    assert len(problems) == 1 and problems[0].file == "README.md" and problems[0].expected == original
    assert problems[0].line == text.count("\n", 0, start) + 1
    assert write(root) == 1
    assert not check(root) and readme.read_text() == text


def test_a_tag_the_run_cannot_answer_is_named(tmp_path: Path) -> None:
    root = _copy_docs(tmp_path)
    page = root / "docs" / "extra.md"
    page.write_text("AUROC 0.5<!--ref nosuch/method metrics.image_auroc .3f-->\n")
    (problem,) = check(root)
    assert problem.file == "docs/extra.md" and "no cell nosuch/method@0" in problem.why


def test_render_formats_like_the_docs() -> None:
    assert render(3650.2, ",.0f") == "3,650" and render(None, ".3f") == "n/a" and render(0.8391, ".3f") == "0.839"


def test_the_docs_command_checks_from_the_command_line(capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["docs", "check"]) == 0
    assert "0 disagreeing" in capsys.readouterr().out
