"""The study's protocol on imported data: a release year per image, the years held out for test, and
the extra folders of generated images and hard-negative normals.

Years come from a table (`--years FILE`: a CSV of folder or model name -> release year; every folder
name on an image's path is looked up, ignoring case, and the name that matched becomes the image's
group) or from the path (`--year-from`: a regex searched in the image's path below its root, whose
group `year` or first group or whole match is the year; an optional group `group` names the group;
or a number N: the year read from the N-th folder name below the root).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import pandas as pd

from benchmarks.data.images import image_size
from benchmarks.data.importer.items import Item
from benchmarks.data.loaders import IMAGE_SUFFIXES
from benchmarks.data.manifest import roi_fits
from benchmarks.data.schema import NORMAL_DEFECT

NAME_COLUMNS = ("name", "folder", "model", "device", "group", "phone")
YEAR_COLUMNS = ("year", "release_year", "released")
YEAR_IN_NAME = re.compile(r"(?<!\d)((?:19|20)\d\d)(?!\d)")
YEAR_RANGE = (1900, 2100)


@dataclass(frozen=True)
class YearRule:
    """Where an image's year comes from (exactly one of `table`, `pattern`, `part`)."""

    table: dict[str, int] | None = None
    pattern: re.Pattern[str] | None = None
    part: int | None = None
    described: str = ""

    def year_of(self, path: str) -> tuple[int | None, str | None]:
        """(year, group or None) for a path below the root; (None, None) when nothing matches."""
        pure = PurePosixPath(path)
        folders = pure.parts[:-1]
        if self.table is not None:
            found = {(name, self.table[name.lower()]) for name in folders if name.lower() in self.table}
            if len({year for _, year in found}) > 1:
                listed = ", ".join(f"{name}={year}" for name, year in sorted(found))
                raise ValueError(f"{path}: its folders name different years in the years table ({listed})")
            if found:
                name = max(found, key=lambda f: folders.index(f[0]))[0]  # the deepest: the most specific
                return next(iter(found))[1], name
            return None, None
        if self.part is not None:
            if self.part >= len(folders):
                return None, None
            match = YEAR_IN_NAME.search(folders[self.part])
            return (int(match.group(1)), None) if match else (None, None)
        assert self.pattern is not None
        match = self.pattern.search(pure.as_posix())
        if match is None:
            return None, None
        groups = match.groupdict()
        text = groups.get("year") or (match.group(1) if match.re.groups else match.group(0))
        try:
            year = int(text)
        except (TypeError, ValueError):
            raise ValueError(f"--year-from {self.described!r} matched {text!r} in {path}: not a year") from None
        return year, groups.get("group")


def read_years_table(path: Path) -> YearRule:
    """`--years FILE`: a CSV with a name column (name/folder/model/device/group/phone, else the first) and a
    year column (year/release_year/released); every problem is named with its row."""
    if not path.is_file():
        raise FileNotFoundError(f"--years {path} does not exist")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    columns = {c.strip().lower(): c for c in table.columns}
    year_column = next((columns[c] for c in YEAR_COLUMNS if c in columns), None)
    name_column = next((columns[c] for c in NAME_COLUMNS if c in columns), None)
    if year_column is None or len(table.columns) < 2:
        raise ValueError(f"--years {path}: needs a name column and a year column ({', '.join(YEAR_COLUMNS)}); "
                         f"has {', '.join(map(str, table.columns))}")
    name_column = name_column or next(c for c in table.columns if c != year_column)
    years: dict[str, int] = {}
    problems: list[str] = []
    for row, raw in enumerate(table.to_dict("records"), start=2):  # the header is line 1
        name, text = str(raw[name_column]).strip(), str(raw[year_column]).strip()
        try:
            year = int(float(text))
        except ValueError:
            problems.append(f"line {row}: year {text!r} is not a number")
            continue
        if not YEAR_RANGE[0] <= year <= YEAR_RANGE[1]:
            problems.append(f"line {row}: year {year} is not a release year")
        elif not name:
            problems.append(f"line {row}: empty name")
        elif years.get(name.lower(), year) != year:
            problems.append(f"line {row}: {name} is given {year} and {years[name.lower()]}")
        else:
            years[name.lower()] = year
    if problems:
        raise ValueError(f"--years {path}: " + "; ".join(problems))
    return YearRule(table=years, described=str(path))


def year_rule_from(pattern: str) -> YearRule:
    """`--year-from`: a folder index (`1`) or a regex."""
    if pattern.strip().isdigit():
        return YearRule(part=int(pattern), described=f"folder {pattern} below the root")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"--year-from {pattern!r} is not a regular expression: {exc}") from None
    return YearRule(pattern=compiled, described=pattern)


def parse_test_years(text: str) -> frozenset[int]:
    """`2024-2025`, `2024`, `2023,2025` or a mix -> the set of years; clear refusal otherwise."""
    years: set[int] = set()
    for piece in (p.strip() for p in text.split(",") if p.strip()):
        match = re.fullmatch(r"(\d{4})(?:\s*-\s*(\d{4}))?", piece)
        if match is None:
            raise ValueError(f"--test-years {text!r}: write years as 2024-2025, 2024 or 2023,2025")
        low, high = int(match.group(1)), int(match.group(2) or match.group(1))
        if low > high:
            raise ValueError(f"--test-years {text!r}: {low}-{high} runs backwards")
        years.update(range(low, high + 1))
    if not years:
        raise ValueError("--test-years is empty")
    return frozenset(years)


def assign_years(items: Sequence[Item], rule: YearRule, root_of: Mapping[str, object], required: bool) -> list[Item]:
    """Items with `year` (and `group` where the rule names one) set from their path below their root.

    `root_of` maps a rel-path prefix (e.g. `generated/`) to strip before matching. Where `required`,
    images of the real set without a year are refused, listing the unmatched folder names with counts."""
    done: list[Item] = []
    unmatched: Counter[str] = Counter()
    for item in items:
        path = item.rel
        for prefix in root_of:
            if path.startswith(prefix):
                path = path[len(prefix):]
        year, group = rule.year_of(path)
        if year is None and required and item.source == "real":
            folders = PurePosixPath(path).parts[:-1]
            unmatched["/".join(folders) or "(the root)"] += 1
        done.append(replace(item, year=year, group=group or item.group) if year is not None else item)
    if unmatched:
        listed = ", ".join(f"{name} ({n})" for name, n in unmatched.most_common(12))
        more = f" and {len(unmatched) - 12} more folder(s)" if len(unmatched) > 12 else ""
        how = ("add their folder or model names to the years table" if rule.table is not None
               else f"--year-from {rule.described!r} finds no year in their paths")
        raise ValueError(f"no release year for {sum(unmatched.values())} image(s), in: {listed}{more}; {how}")
    return done


def hard_negative_items(items: Sequence[Item]) -> list[Item]:
    """A hard-negative folder's images: normals flagged `hard_negative`, whatever folder they sit in."""
    return [replace(i, label=0, defect=NORMAL_DEFECT, mask=None, drawing=None, hard_negative=True,
                    from_normal_folder=True) for i in items]


def generated_items(items: Sequence[Item]) -> list[Item]:
    """A generated folder's images as `source=generated` rows (their labels and masks as read)."""
    return [replace(i, source="generated") for i in items]


def regions_of_interest(items: Sequence[Item], roi: Path) -> dict[str, Path]:
    """`--roi`: item rel path -> the ROI mask it is inspected in. `roi` is one mask for every image, or
    a folder of `<group>.<ext>` masks, one per group (a phone model). Images of a group without a mask
    and masks of another aspect ratio than their image are refused, listed."""
    if roi.is_file():
        chosen = {item.rel: roi for item in items}
    elif roi.is_dir():
        masks = {p.stem.lower(): p for p in sorted(roi.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
        missing = Counter(item.group for item in items if item.group.lower() not in masks)
        if missing:
            listed = ", ".join(f"{g} ({n})" for g, n in missing.most_common(12))
            raise ValueError(f"--roi {roi}: no mask for the group(s) {listed}; name them <group>.png "
                             f"(found: {', '.join(sorted(masks)) or 'none'})")
        chosen = {item.rel: masks[item.group.lower()] for item in items}
    else:
        raise FileNotFoundError(f"--roi {roi} does not exist")
    shapes = {path: image_size(path) for path in set(chosen.values())}
    wrong: list[str] = []
    for item in items:
        (ih, iw), (rh, rw) = image_size(item.image), shapes[chosen[item.rel]]
        if not roi_fits((ih, iw), (rh, rw)):  # the loader's rule, checked before anything is written
            wrong.append(f"{item.rel} ({iw}x{ih}) with {chosen[item.rel].name} ({rw}x{rh})")
    if wrong:
        raise ValueError(f"--roi: {len(wrong)} image(s) have another aspect ratio than their region of interest "
                         f"(e.g. {'; '.join(wrong[:3])})")
    return chosen
