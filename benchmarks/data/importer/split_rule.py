"""The split rule of `data import` (SPEC 3.1: train normal only, val with both classes, test unseen).

- A set that publishes train/test (MVTec AD, MVTec AD 2, VisA's split_csv, BTAD, KolektorSDD2):
  train = the published train normals. val = everything published as validation, the published
  train's anomalies (KolektorSDD2), and for each class val still lacks a seeded `val_fraction` of the
  published test images of that class, stratified by defect type. test = the rest of the published
  test. Deviation from the published protocols: none of them but MVTec AD 2 publishes a validation
  split (and its holds normals only), so val is carved out of the published test: the remaining test
  is smaller than the published one, and AUROC on it is not the published full-test number.
- A set that publishes no split: every real image is split, seeded and stratified by (label, defect,
  hard negative): `val_fraction` and `test_fraction` of the normals go to val and test, the rest to
  train; the anomalies go to val and test in the ratio of those two fractions.
- Cross-generation (`test_years`): test = every real image of those years; of the other years'
  images, a seeded `val_fraction` of the normals (stratified by defect, hard negative and year) go to
  val, the rest to train, and the anomalies to val (none is left unused).
- `supervised` (opt-in) moves that fraction of the non-test anomalies, stratified by defect type,
  into train as label-1 rows (the published train's anomalies first).
- Generated rows (`source=generated`) go to train, always; a generated image of a test year is refused.
- Byte-identical images are one image: the copy in the earliest of train, val, test is kept and the
  others are dropped (listed), so no image content is in two splits; identical bytes with different
  labels are refused, and so is a generated image identical to a real one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from benchmarks.data.importer.checking import Checked
from benchmarks.data.importer.items import Item

PUBLISHED_ORDER = {"train": 0, "val": 1, "test": 2, None: 3}


@dataclass(frozen=True)
class SplitSettings:
    """The rule's knobs, as the command line gives them."""

    seed: int = 0
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    supervised: float = 0.0
    test_years: frozenset[int] | None = None


def deduplicate(items: list[Item], checked: list[Checked]) -> tuple[list[int], list[dict[str, str]]]:
    """Indices to keep (one per image content: real before generated, the earliest published split,
    then path) and the dropped ones."""
    first: dict[str, int] = {}
    dropped: list[dict[str, str]] = []
    order = sorted(range(len(items)), key=lambda i: (items[i].source != "real", PUBLISHED_ORDER[items[i].published],
                                                     items[i].rel))
    for i in order:
        digest = checked[i].sha256
        if digest not in first:
            first[digest] = i
            continue
        kept = items[first[digest]]
        if items[i].source == "generated" and kept.source == "real":
            raise ValueError(f"generated image {items[i].image} is byte-identical to the real image {kept.image}: "
                             "a generated image must be new content (a copy would put a real image in train)")
        if kept.label != items[i].label:
            raise ValueError(f"{items[i].image} and {kept.image} are byte-identical but labelled "
                             f"{'anomalous' if items[i].label else 'normal'} and "
                             f"{'anomalous' if kept.label else 'normal'}: fix the set before importing")
        dropped.append({"image": items[i].rel, "same_as": kept.rel})
    return sorted(first.values()), dropped


def stratified_order(indices: list[int], items: list[Item], rng: np.random.Generator,
                     by_year: bool = False) -> list[int]:
    """`indices` in a seeded order that spreads every (label, defect, hard negative[, year]) stratum evenly.

    Each stratum is shuffled and its members placed at (rank + offset) / size, offset seeded per
    stratum; so any prefix of the order holds about the same share of every stratum."""
    strata: dict[tuple[int, str, bool, int], list[int]] = {}
    for i in indices:
        year = (items[i].year or 0) if by_year else 0
        strata.setdefault((items[i].label, items[i].defect, items[i].hard_negative, year), []).append(i)
    keyed: list[tuple[float, float, int]] = []
    for key in sorted(strata):
        members = strata[key]
        offset = float(rng.random())
        for rank, j in enumerate(rng.permutation(len(members))):
            keyed.append(((rank + offset) / len(members), float(rng.random()), members[int(j)]))
    return [i for *_, i in sorted(keyed)]


def at_least_one(fraction: float, n: int) -> int:
    return max(1, int(round(fraction * n))) if fraction > 0 else 0


def counts_text(items: list[Item], indices: list[int]) -> str:
    normal = sum(1 for i in indices if items[i].label == 0)
    return f"{normal} normal and {len(indices) - normal} anomalous image(s)"


def assign(items: list[Item], keep: list[int], published: bool, settings: SplitSettings) -> dict[int, str]:
    """index -> split for every kept item, by the rule above."""
    rng = np.random.default_rng(settings.seed)
    real = [i for i in keep if items[i].source == "real"]
    if settings.test_years is not None:
        split = _split_cross_generation(items, real, rng, settings)
    elif published:
        split = _split_published(items, real, rng, settings.val_fraction, settings.supervised)
    else:
        split = _split_unpublished(items, real, rng, settings.val_fraction, settings.test_fraction,
                                   settings.supervised)
    for i in keep:
        if items[i].source == "generated":
            if settings.test_years is not None and items[i].year in settings.test_years:
                raise ValueError(f"generated image {items[i].image} is of {items[i].year}, a test year: generated "
                                 "images of test generations would show train the unseen designs")
            split[i] = "train"
    return split


def _split_unpublished(items: list[Item], keep: list[int], rng: np.random.Generator, val_fraction: float,
                       test_fraction: float, supervised: float) -> dict[int, str]:
    split: dict[int, str] = {}
    normals = [i for i in keep if items[i].label == 0]
    anomalies = [i for i in keep if items[i].label == 1]
    n_val, n_test = at_least_one(val_fraction, len(normals)), at_least_one(test_fraction, len(normals))
    n_sup = at_least_one(supervised, len(anomalies))
    rest = len(anomalies) - n_sup
    a_val = max(1, int(round(rest * val_fraction / (val_fraction + test_fraction))))
    if len(normals) - n_val - n_test < 1 or rest - a_val < 1:
        need = "3 normal and " + ("3" if supervised else "2") + " anomalous"
        raise ValueError(f"too few images to give train normals and val and test both classes: have "
                         f"{counts_text(items, keep)}, need at least {need} (more with small fractions)")
    for position, i in enumerate(stratified_order(normals, items, rng)):
        split[i] = "val" if position < n_val else "test" if position < n_val + n_test else "train"
    for position, i in enumerate(stratified_order(anomalies, items, rng)):
        split[i] = "train" if position < n_sup else "val" if position < n_sup + a_val else "test"
    return split


def _split_cross_generation(items: list[Item], keep: list[int], rng: np.random.Generator,
                            settings: SplitSettings) -> dict[int, str]:
    assert settings.test_years is not None
    years = settings.test_years
    test = [i for i in keep if items[i].year in years]
    known = [i for i in keep if items[i].year not in years]
    shown = (str(min(years)) if len(years) == 1 else f"{min(years)}-{max(years)}"
             if max(years) - min(years) + 1 == len(years) else ",".join(map(str, sorted(years))))
    for label, word in ((0, "normal"), (1, "anomalous")):
        if not any(items[i].label == label for i in test):
            raise ValueError(f"--test-years {shown}: no {word} image of those years ({counts_text(items, test)} in "
                             "them), so test cannot hold both classes")
    normals = [i for i in known if items[i].label == 0]
    anomalies = [i for i in known if items[i].label == 1]
    n_val = at_least_one(settings.val_fraction, len(normals))
    n_sup = at_least_one(settings.supervised, len(anomalies))
    if len(normals) - n_val < 1 or len(anomalies) - n_sup < 1:
        raise ValueError(f"too few images outside the test years {shown} to give train normals and val both "
                         f"classes: have {counts_text(items, known)}")
    split = {i: "test" for i in test}
    for position, i in enumerate(stratified_order(normals, items, rng, by_year=True)):
        split[i] = "val" if position < n_val else "train"
    for position, i in enumerate(stratified_order(anomalies, items, rng, by_year=True)):
        split[i] = "train" if position < n_sup else "val"
    return split


def _split_published(items: list[Item], keep: list[int], rng: np.random.Generator, val_fraction: float,
                     supervised: float) -> dict[int, str]:
    split: dict[int, str] = {}
    train_anomalies = [i for i in keep if items[i].published == "train" and items[i].label == 1]
    test = [i for i in keep if items[i].published == "test"]
    for i in keep:
        if items[i].published == "train":
            split[i] = "train" if items[i].label == 0 else "val"
        elif items[i].published == "val":
            split[i] = "val"
    if supervised > 0:
        test_anomalies = [i for i in test if items[i].label == 1]
        n_sup = at_least_one(supervised, len(train_anomalies) + len(test_anomalies))
        order = stratified_order(train_anomalies, items, rng) + stratified_order(test_anomalies, items, rng)
        if n_sup >= len(order):
            raise ValueError(f"--supervised-train {supervised} leaves no anomalies for val and test "
                             f"({len(order)} anomalous image(s))")
        moved = set(order[:n_sup])
        for i in moved:
            split[i] = "train"
        test = [i for i in test if i not in moved]
    for label, word in ((0, "normal"), (1, "anomalous")):
        if any(split.get(i) == "val" and items[i].label == label for i in keep):
            continue
        pool = [i for i in test if items[i].label == label]
        if len(pool) < 2:
            raise ValueError(f"too few images: the published test has {len(pool)} {word} image(s) left, "
                             f"need 2 to give val and test one each ({counts_text(items, keep)} in all)")
        take = min(at_least_one(val_fraction, len(pool)), len(pool) - 1)
        for i in stratified_order(pool, items, rng)[:take]:
            split[i] = "val"
    for i in test:
        split.setdefault(i, "test")
    for name, label, word in (("train", 0, "normal"), ("test", 0, "normal"), ("test", 1, "anomalous")):
        if not any(s == name and items[i].label == label for i, s in split.items()):
            raise ValueError(f"too few images: no {word} image is left for {name} ({counts_text(items, keep)} "
                             f"in all; the published train gives train its normals, the published test gives test)")
    return split


def describe_rule(published: bool, settings: SplitSettings, generated: bool) -> str:
    """The rule in words, for `split.json`."""
    supervised = settings.supervised
    sup = (f" Train also holds a seeded {supervised:g} of the anomalies (label 1, stratified by defect type"
           f"{', the published train anomalies first' if published else ''}; --supervised-train)."
           if supervised else " Train holds normals only.")
    gen = " Generated images (--generated) are in train only, as source=generated rows." if generated else ""
    dedup = " Byte-identical images are kept once, in the earliest of train, val, test."
    if settings.test_years is not None:
        years = ",".join(map(str, sorted(settings.test_years)))
        return (f"cross-generation: test = every real image of the release years {years} (--test-years); of "
                f"the other years, a seeded {settings.val_fraction:g} of the normals (stratified by defect, hard "
                "negative and year) go to val and the rest to train, and the anomalies go to val."
                + sup + gen + dedup)
    if published:
        return ("train = the published train normals; val = what the set publishes as validation, plus its "
                "published train anomalies, plus, for each class val still lacks, a seeded "
                f"{settings.val_fraction:g} of the published test images of that class stratified by defect type; "
                "test = the rest of the published test (so test is smaller than the published one)."
                + sup + gen + dedup)
    return (f"no published split: seeded and stratified by (label, defect, hard negative), {settings.val_fraction:g} "
            f"of the normals go to val, {settings.test_fraction:g} to test and the rest to train; the anomalies "
            f"go to val and test in the ratio {settings.val_fraction:g}:{settings.test_fraction:g}." + sup + gen + dedup)


def assert_sound(items: list[Item], checked: list[Checked], split: dict[int, str], settings: SplitSettings) -> None:
    """The guarantees, checked on the final assignment (a bug here must never reach a manifest)."""
    seen: dict[str, str] = {}
    for i, name in split.items():
        item = items[i]
        other = seen.setdefault(checked[i].sha256, name)
        if other != name:
            raise RuntimeError(f"internal error: {item.image} is in {name} and its content in {other}")
        if name == "train" and item.label == 1 and item.source == "real" and not settings.supervised:
            raise RuntimeError(f"internal error: anomalous {item.image} assigned to train")
        if item.source == "generated" and name != "train":
            raise RuntimeError(f"internal error: generated {item.image} assigned to {name}")
        if settings.test_years is not None and item.source == "real" and (item.year in settings.test_years) != (name == "test"):
            raise RuntimeError(f"internal error: {item.image} of {item.year} assigned to {name} "
                               f"(test years {sorted(settings.test_years)})")
    for name in ("val", "test"):
        labels = {items[i].label for i, s in split.items() if s == name}
        if labels != {0, 1}:
            raise RuntimeError(f"internal error: the {name} split does not hold both classes")
