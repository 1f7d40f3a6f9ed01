"""The F1 threshold comes from validation scores, never from test: a leak would change the numbers.

The planted data makes the two splits disagree: validation anomalies are clearly brighter than
validation normals (any threshold between them is F1-optimal there), while on test normals and
anomalies overlap, so the test-optimal threshold sits elsewhere and gives a higher test F1 than
the validation threshold does. A runner that peeked at test would store that threshold or F1.
"""

from __future__ import annotations

import json
from pathlib import Path

import dummy_plugins  # noqa: F401  (registers the test plugins)
import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import f1_score

from benchmarks.metrics import choose_threshold
from benchmarks.running.config import RunConfig
from benchmarks.running.presets import get_preset
from benchmarks.running.runner import run

# grey levels of flat 32x32 images; mean-brightness scores |level - train mean| = |level - 100|
LEVELS = {
    ("train", 0): [100] * 6,
    ("val", 0): [100, 102, 104, 106],
    ("val", 1): [150, 160, 170, 180],
    ("test", 0): [100, 110, 120, 130, 140, 150],
    ("test", 1): [125, 135, 145, 155, 165, 175],
}


def _manifest(root: Path) -> Path:
    (root / "images").mkdir(parents=True)
    lines = ["image,label,split,source,year,group,defect,hard_negative,mask"]
    for (split, label), levels in LEVELS.items():
        for i, level in enumerate(levels):
            name = f"images/{split}_{label}_{i}.png"
            Image.fromarray(np.full((32, 32, 3), level, np.uint8)).save(root / name)
            year = 2024 if split == "test" else 2020
            lines.append(f"{name},{label},{split},real,{year},g{year},{'scratch' if label else 'none'},false,")
    (root / "manifest.csv").write_text("\n".join(lines) + "\n")
    return root / "manifest.csv"


def test_threshold_and_f1_come_from_validation_not_test(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path / "data")
    preset = get_preset("smoke").with_overrides(bootstrap_samples=20, max_train_images=None, max_eval_images=None)
    config = RunConfig(methods=("mean-brightness",), datasets=(f"manifest:{manifest}",), seeds=(0,),
                       preset=preset, weights="random", out=tmp_path / "run")
    record = run(config).ran[0]
    assert record.status == "ok", record.error
    stored = record.metrics
    scores = pd.read_parquet(tmp_path / "run" / record.scores_file)
    val, test = scores[scores.split == "val"], scores[scores.split == "test"]

    from_val = choose_threshold(val["score"].to_numpy(), val["label"].to_numpy())
    from_test = choose_threshold(test["score"].to_numpy(), test["label"].to_numpy())
    assert from_val.value != from_test.value  # the planted splits disagree
    f1_val_threshold = f1_score(test["label"], test["score"] >= from_val.value)
    f1_test_threshold = f1_score(test["label"], test["score"] >= from_test.value)
    assert f1_test_threshold > f1_val_threshold + 0.1  # peeking at test would pay off

    assert stored.threshold_source == "val"
    assert stored.threshold == from_val.value
    assert stored.f1 == f1_val_threshold
    line = json.loads((tmp_path / "run" / "runs.jsonl").read_text().splitlines()[-1])
    assert line["metrics"]["threshold"] == from_val.value
