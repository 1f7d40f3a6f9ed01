"""The ELPV solar-cell dataset (the `elpv-dataset` PyPI package) as a real external benchmark.

2,624 real 300x300 electroluminescence images of mono- and polycrystalline cells with a defect
probability in {0, 1/3, 2/3, 1}. Normal = probability 0; anomalous = probability >= 2/3; the
ambiguous 1/3 cells are left out. No pixel masks (pixel metrics are null).

`elpv` is the cross-type split, our analogue of the smartphone cross-generation protocol:
train and val on mono cells, test on poly cells. `elpv-stratified` mixes both types in every
split. `elpv-mono` holds out mono cells from mono cells (no type shift): the in-distribution
reference split on which a real pretrained PatchCore is checked. Sizes scale with the preset's
`data_scale` (1.0: train 150 normal + 30 anomalous, val 40 + 40, test 100 + 100), drawn with
a fixed seed so every cell sees the same images.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from benchmarks.data.cache import cache_root
from benchmarks.data.manifest import build_dataset
from benchmarks.data.registry import DATASETS, DatasetRequest
from benchmarks.data.schema import Dataset

ELPV_VERSION = "v1"
BASE_COUNTS = {"train": (150, 30), "val": (40, 40), "test": (100, 100)}
CLASS_NAME = "solar cell"
DESCRIPTION = "an electroluminescence image of a photovoltaic solar cell"


def _images_dir() -> Path:
    """Decode the package's images once into PNG files (atomic: temp folder then rename)."""
    folder = cache_root() / "elpv" / ELPV_VERSION
    table = folder / "labels.csv"
    if table.is_file():
        return folder
    from elpv_dataset.utils import load_dataset

    images, probs, types = load_dataset()
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".elpv-"))
    (staging / "images").mkdir()
    for index, image in enumerate(images):
        Image.fromarray(image).save(staging / "images" / f"cell_{index:04d}.png")
    pd.DataFrame(
        {
            "image": [f"images/cell_{i:04d}.png" for i in range(len(images))],
            "probability": probs,
            "type": types,
        }
    ).to_csv(staging / "labels.csv", index=False)
    try:
        os.replace(staging, folder)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _draw(pool: pd.DataFrame, n: int, rng: np.random.Generator) -> pd.DataFrame:
    n = min(n, len(pool))
    return pool.iloc[np.sort(rng.choice(len(pool), size=n, replace=False))]


# how train/val and test cells are drawn -> the registered dataset name
ELPV_SPLITS = {"cross-type": "elpv", "stratified": "elpv-stratified", "mono": "elpv-mono"}


def _manifest(labels: pd.DataFrame, scale: float, split: str) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    labels = labels[(labels.probability == 0) | (labels.probability >= 0.6)].copy()
    labels["label"] = (labels.probability >= 0.6).astype(int)
    mono = labels[labels.type == "mono"]
    pools = {
        "cross-type": {"train": mono, "val": None, "test": labels[labels.type == "poly"]},
        "stratified": {"train": labels, "val": None, "test": labels},
        "mono": {"train": mono, "val": None, "test": mono},
    }[split]
    parts = []
    used: set[int] = set()
    for split in ("test", "train", "val"):
        pool = pools[split] if pools[split] is not None else pools["train"]
        for label, base in zip((0, 1), BASE_COUNTS[split], strict=True):
            candidates = pool[(pool.label == label) & ~pool.index.isin(used)]
            chosen = _draw(candidates, max(1, round(base * scale)), rng)
            used.update(chosen.index.tolist())
            parts.append(chosen.assign(split=split))
    table = pd.concat(parts)
    return pd.DataFrame(
        {
            "image": table.image,
            "label": table.label.astype(str),
            "split": table.split,
            "source": "real",
            "year": "",
            "group": table.type,
            "defect": np.where(table.label == 1, "cell_defect", "none"),
            "hard_negative": "false",
            "mask": "",
        }
    )


def load_elpv(scale: float = 1.0, split: str = "cross-type") -> Dataset:
    if split not in ELPV_SPLITS:
        raise ValueError(f"ELPV split must be one of {tuple(ELPV_SPLITS)}, got {split!r}")
    folder = _images_dir()
    labels = pd.read_csv(folder / "labels.csv")
    name = ELPV_SPLITS[split]
    return build_dataset(
        _manifest(labels, scale, split),
        folder,
        name=name,
        source=name,
        class_name=CLASS_NAME,
        description=DESCRIPTION,
    )


def _register() -> None:
    @DATASETS.register("elpv")
    def elpv(request: DatasetRequest) -> Dataset:
        """ELPV cross-type: train/val on mono cells, test on poly cells."""
        return load_elpv(request.scale, "cross-type")

    @DATASETS.register("elpv-stratified")
    def elpv_stratified(request: DatasetRequest) -> Dataset:
        """ELPV with both cell types in every split."""
        return load_elpv(request.scale, "stratified")

    @DATASETS.register("elpv-mono")
    def elpv_mono(request: DatasetRequest) -> Dataset:
        """ELPV mono cells held out from mono cells (no type shift)."""
        return load_elpv(request.scale, "mono")


_register()
