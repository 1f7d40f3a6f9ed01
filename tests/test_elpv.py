"""ELPV split tables (built from a synthetic label table: no image decoding)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from benchmarks.data.elpv import BASE_COUNTS, _manifest


@pytest.fixture(scope="module")
def labels() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 2624
    return pd.DataFrame({"image": [f"images/cell_{i:04d}.png" for i in range(n)],
                         "probability": rng.choice([0, 1 / 3, 2 / 3, 1], n, p=[0.6, 0.1, 0.1, 0.2]),
                         "type": rng.choice(["mono", "poly"], n, p=[0.4, 0.6])})


@pytest.mark.parametrize("split", ["cross-type", "stratified", "mono"])
def test_splits_are_disjoint_sized_and_typed(labels: pd.DataFrame, split: str) -> None:
    table = _manifest(labels, 1.0, split)
    assert not table.image.duplicated().any()
    for name, (normal, anomalous) in BASE_COUNTS.items():
        part = table[table.split == name]
        assert (part.label == "0").sum() == normal and (part.label == "1").sum() == anomalous
    groups = {name: set(table[table.split == name].group) for name in BASE_COUNTS}
    if split == "mono":
        assert groups == {"train": {"mono"}, "val": {"mono"}, "test": {"mono"}}
    elif split == "cross-type":
        assert groups == {"train": {"mono"}, "val": {"mono"}, "test": {"poly"}}
    else:
        assert groups["test"] == {"mono", "poly"}
    ambiguous = labels.image[(labels.probability > 0) & (labels.probability < 0.6)]
    assert not set(table.image) & set(ambiguous)
