"""The table engine: a table of display columns written as CSV (raw values), Markdown and LaTeX (booktabs).

CIs are shown as `value [lo, hi]` because bootstrap intervals are not symmetric. Every string that
comes from a dataset or a plugin (names, groups, errors) is escaped for the format it is written in.
This module knows nothing about cells or methods; `result_tables` and `report` build tables with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

WORSE_MARK = "†"


MISSING_MD = "–"


MISSING_TEX = "--"


Rendered = tuple[str, str]  # (text that bold applies to, trailing text such as a CI)


@dataclass(frozen=True)
class Column:
    """One displayed column.

    `render` turns a row of the table's data into text, or None where the value is missing.
    `rank_by` names the data column whose best value is bolded (ties at `decimals` all bold).
    `text` marks data-provided strings: escaped per output format and left-aligned.
    """

    header: str
    render: Callable[[pd.Series], Rendered | None]
    rank_by: str | None = None
    higher_is_better: bool = True
    decimals: int = 3
    text: bool = False


@dataclass(frozen=True)
class ReportTable:
    """A table written as `<name>.csv` (raw values), `<name>.md` and `<name>.tex` (display columns)."""

    name: str
    title: str
    data: pd.DataFrame
    columns: tuple[Column, ...]
    csv: pd.DataFrame | None = None  # raw values for the CSV when they differ from `data`

    def cells(self) -> list[list[tuple[str, str, bool] | None]]:
        """Rows of (head, tail, bold) per column, None where missing."""
        bold = {i: self._best_rows(c) for i, c in enumerate(self.columns)}
        rows = []
        for r, (_, row) in enumerate(self.data.iterrows()):
            cells: list[tuple[str, str, bool] | None] = []
            for i, column in enumerate(self.columns):
                value = column.render(row)
                cells.append(None if value is None else (value[0], value[1], r in bold[i]))
            rows.append(cells)
        return rows

    def _best_rows(self, column: Column) -> set[int]:
        if column.rank_by is None:
            return set()
        values = (
            pd.to_numeric(self.data[column.rank_by], errors="coerce")
            .round(column.decimals)
            .reset_index(drop=True)
        )
        if values.notna().sum() < 2:
            return set()
        best = values.max() if column.higher_is_better else values.min()
        return set(values.index[values == best])

    def _row_texts(
        self, row: list[tuple[str, str, bool] | None], escape: Callable[[str], str], missing: str,
        bold_format: str, render_tail: Callable[[str], str],
    ) -> list[str]:
        """One row's cells as text: text columns escaped, the best value bolded, the tail rendered."""
        texts = []
        for column, cell in zip(self.columns, row, strict=True):
            if cell is None:
                texts.append(missing)
                continue
            head, tail, bold = cell
            head = escape(head) if column.text else head
            texts.append((bold_format.format(head) if bold else head) + render_tail(tail))
        return texts

    def to_markdown(self) -> str:
        header = "| " + " | ".join(md_escape(c.header) for c in self.columns) + " |"
        align = "|" + "|".join(":--" if c.text else "--:" for c in self.columns) + "|"
        lines = [header, align]
        for row in self.cells():
            texts = self._row_texts(row, md_escape, MISSING_MD, "**{}**", lambda tail: tail)
            lines.append("| " + " | ".join(texts) + " |")
        return "\n".join(lines) + "\n"

    def to_latex(self, comments: Sequence[str] = ()) -> str:
        """A booktabs `tabular` (no float environment, so the paper sets caption and label)."""
        spec = "".join("l" if c.text else "r" for c in self.columns)
        lines = [f"% {one_line(c)}" for c in (self.title, *comments)]
        lines += [rf"\begin{{tabular}}{{{spec}}}", r"\toprule"]
        lines.append(" & ".join(tex_escape(c.header) for c in self.columns) + r" \\")
        lines.append(r"\midrule")
        for row in self.cells():
            texts = self._row_texts(
                row, tex_escape, MISSING_TEX, r"\textbf{{{}}}",
                lambda tail: tail.replace("±", r"$\pm$").replace(WORSE_MARK, r"\textsuperscript{\dag}"),
            )
            lines.append(" & ".join(texts) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path, comments: Sequence[str] = ()) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        paths = [out_dir / f"{self.name}.{ext}" for ext in ("csv", "md", "tex")]
        (self.data if self.csv is None else self.csv).to_csv(paths[0], index=False)
        paths[1].write_text(f"{self.title}\n\n{self.to_markdown()}", encoding="utf-8")
        paths[2].write_text(self.to_latex(comments), encoding="utf-8")
        return paths


def md_escape(text: str) -> str:
    """Make a data-provided string inert in Markdown: one line, no markup, links or HTML."""
    text = one_line(text)
    return re.sub(r"([\\`*_\[\]<>|~&$])", r"\\\1", text)


def tex_escape(text: str) -> str:
    """Escape LaTeX special characters in a data-provided string."""
    replacements = {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
        "<": r"\textless{}",
        ">": r"\textgreater{}",
        "|": r"\textbar{}",
        "[": "{[}",
        "]": "{]}",
    }
    return "".join(replacements.get(ch, ch) for ch in one_line(text))


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def number(name: str, decimals: int = 3) -> Callable[[pd.Series], Rendered | None]:
    def render(row: pd.Series) -> Rendered | None:
        value = row.get(name)
        return None if pd.isna(value) else (f"{value:.{decimals}f}", "")

    return render


def with_ci(name: str) -> Callable[[pd.Series], Rendered | None]:
    def render(row: pd.Series) -> Rendered | None:
        value, lo, hi = row.get(name), row.get(f"{name}_lo"), row.get(f"{name}_hi")
        if pd.isna(value):
            return None
        return f"{value:.3f}", "" if pd.isna(lo) or pd.isna(hi) else f" [{lo:.3f}, {hi:.3f}]"

    return render


def milliseconds(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def text_of(name: str) -> Callable[[pd.Series], Rendered | None]:
    def render(row: pd.Series) -> Rendered | None:
        value = row.get(name)
        return None if value is None or pd.isna(value) else (str(value), "")

    return render
