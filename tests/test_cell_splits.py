"""The cell's split handling, unit by unit: which training rows a variant's protocol may see
(`select_train`) and the stratified, fixed-seed evaluation caps (`cap_eval`). The runner tests
check the same end to end; these are fast enough for mutation testing (docs/mutation-testing.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.data.schema import ImageRecord
from benchmarks.plugins.contract import Protocol, VariantSpec
from benchmarks.running.cell import CellSkipped, cap_eval, select_train


def _rows(spec: list[tuple[str, int, str, bool]]) -> list[ImageRecord]:
    """(split, label, source, hard_negative) per row."""
    return [ImageRecord(row=i + 1, image_id=f"{i}.png", image=Path(f"/d/{i}.png"), label=label, split=split,
                        source=source, group="g", defect="scratch" if label else "none", hard_negative=hard)
            for i, (split, label, source, hard) in enumerate(spec)]


ROWS = _rows([
    ("train", 0, "real", False), ("train", 0, "real", False), ("train", 0, "real", True),
    ("train", 1, "real", False), ("train", 0, "generated", False), ("train", 1, "generated", False),
    ("val", 0, "real", False), ("test", 0, "real", False), ("test", 1, "real", False),
])


def _ids(rows: list[ImageRecord]) -> list[int]:
    return [r.row for r in rows]


def test_zero_shot_sees_nothing() -> None:
    assert select_train(ROWS, VariantSpec(Protocol.ZERO_SHOT), seed=0, cap=None) == []


def test_full_shot_sees_the_plain_normal_training_rows_of_its_sources() -> None:
    assert _ids(select_train(ROWS, VariantSpec(Protocol.FULL_SHOT), seed=0, cap=None)) == [1, 2]
    both = VariantSpec(Protocol.FULL_SHOT, sources=("real", "generated"))
    assert _ids(select_train(ROWS, both, seed=0, cap=None)) == [1, 2, 5]
    # only hard negatives among the normals: they are used rather than nothing
    hard_only = _rows([("train", 0, "real", True), ("train", 1, "real", False)])
    assert _ids(select_train(hard_only, VariantSpec(Protocol.FULL_SHOT), seed=0, cap=None)) == [1]


def test_few_shot_draws_its_shots_by_seed_from_plain_normals() -> None:
    normals = _rows([("train", 0, "real", False)] * 10 + [("train", 1, "real", False)])
    spec = VariantSpec(Protocol.FEW_SHOT, shots=3)
    draws = {tuple(_ids(select_train(normals, spec, seed=s, cap=None))) for s in range(6)}
    assert all(len(d) == 3 and list(d) == sorted(d) and 11 not in d for d in draws) and len(draws) > 1
    assert select_train(normals, spec, seed=4, cap=None) == select_train(normals, spec, seed=4, cap=None)
    with pytest.raises(CellSkipped, match=r"^11-shot variant but only 10 normal training images$"):
        select_train(normals, VariantSpec(Protocol.FEW_SHOT, shots=11), seed=0, cap=None)
    every = select_train(normals, VariantSpec(Protocol.FEW_SHOT, shots=10), seed=0, cap=None)
    assert _ids(every) == list(range(1, 11))  # each normal once: drawn without replacement


def test_supervised_sees_both_classes_of_its_sources_and_never_val_or_test() -> None:
    spec = VariantSpec(Protocol.SUPERVISED, sources=("real",))
    assert _ids(select_train(ROWS, spec, seed=0, cap=None)) == [1, 2, 3, 4]
    gen = VariantSpec(Protocol.SUPERVISED, sources=("real", "generated"))
    assert _ids(select_train(ROWS, gen, seed=0, cap=None)) == [1, 2, 3, 4, 5, 6]


def test_caps_keep_both_classes_in_proportion_and_order() -> None:
    rows = _rows([("test", 0, "real", False)] * 30 + [("test", 1, "real", False)] * 10)
    capped = cap_eval(rows, 20)
    assert [r.label for r in capped].count(0) == 15 and [r.label for r in capped].count(1) == 5
    assert _ids(capped) == sorted(_ids(capped)) and capped == cap_eval(rows, 20)  # fixed seed, kept order
    assert cap_eval(rows, None) == rows and cap_eval(rows, 40) == rows and cap_eval(rows, 100) == rows
    assert len(set(_ids(capped))) == 20  # drawn without replacement
    rare = _rows([("test", 0, "real", False)] * 97 + [("test", 1, "real", False)] * 3)
    assert [r.label for r in cap_eval(rare, 10)].count(1) == 1  # 0.3 rounds to 0, but a class never vanishes
    spec = VariantSpec(Protocol.FULL_SHOT)
    train = _rows([("train", 0, "real", False)] * 12)
    first = select_train(train, spec, seed=1, cap=5)
    assert len(first) == 5 and first == select_train(train, spec, seed=1, cap=5)
    assert {tuple(_ids(select_train(train, spec, seed=s, cap=5))) for s in range(5)} != {tuple(_ids(first))}
    assert len(select_train(train, VariantSpec(Protocol.SUPERVISED), seed=1, cap=5)) == 5
    assert np.unique(_ids(first)).size == 5
