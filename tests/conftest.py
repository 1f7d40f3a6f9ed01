"""Shared fixtures: a tiny synthetic image task and plugin contexts with random weights."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks.data.schema import ImageRecord  # noqa: E402
from benchmarks.plugins.contract import Baseline, MethodContext, Sample, TinySetup  # noqa: E402
from benchmarks.plugins.registry import BASELINES, FAMILIES, INSTALLED, load_plugins  # noqa: E402
from benchmarks.plugins.weights import WeightsResolver  # noqa: E402
from benchmarks.running.presets import get_preset  # noqa: E402


def _toy_image(rng: np.random.Generator, anomalous: bool, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A striped texture; anomalies add a bright diagonal scratch. Returns RGB uint8 and bool mask."""
    yy, xx = np.mgrid[0:size, 0:size]
    phase = rng.uniform(0, 2 * np.pi)
    base = 0.5 + 0.2 * np.sin(xx / 3.0 + phase) + rng.normal(0, 0.02, (size, size))
    mask = np.zeros((size, size), dtype=bool)
    if anomalous:
        x0, y0 = rng.integers(size // 4, size // 2, 2)
        length = size // 3
        for t in range(length):
            mask[y0 + t, x0 + t : x0 + t + 2] = True
        base[mask] = 1.0
    rgb = np.clip(np.stack([base, base * 0.9, base * 0.8], axis=-1) * 255, 0, 255).astype(np.uint8)
    return rgb, mask


def installed_methods() -> dict[str, tuple[type[Baseline], TinySetup | None]]:
    """Every method installed through the entry points, and one member per method family, each with
    the small setup it declares for tests (`MethodMeta.tiny`; a family's `example_tiny`)."""
    load_plugins()
    methods = {name: (cls := BASELINES.get(name), cls.meta.tiny) for name in sorted(INSTALLED)}
    for family in FAMILIES.values():
        methods[family.example_name] = (BASELINES.get(family.example_name), family.example_tiny)
    return methods


FITTED_VARIANTS: dict[str, tuple[tuple[str, dict[str, object]], ...]] = {
    "patchcore": (("default", {"reweight": True}),), "dino-knn": (("full", {}),), "winclip": (("k1", {}),),
    "anomalygpt": (("unsupervised", {}),), "ltfm": (("base", {}), ("ft-real-gen", {"score": "mean"})),
}
"""Variants whose fitted state differs from the tiny setup's (a trained decoder, k-shot windows, a
coreset, a synthetic base, an LTFM whose score reads its head as well as its map), run beside each
method's tiny setup: its options updated with the ones given here."""


def installed_setups() -> dict[str, tuple[type[Baseline], TinySetup]]:
    """`installed_methods()`' tiny setups plus `FITTED_VARIANTS`, keyed `method` or `method/variant`."""
    setups = {name: (cls, tiny) for name, (cls, tiny) in installed_methods().items() if tiny is not None}
    for name, variants in FITTED_VARIANTS.items():
        if name in setups:
            cls, tiny = setups[name]
            setups |= {f"{name}/{variant}": (cls, TinySetup(variant, {**tiny.options, **extra}))
                       for variant, extra in variants}
    return setups


@pytest.fixture(scope="session", autouse=True)
def registered_methods() -> None:
    """The registry as the installed entry points make it (built-ins register like any plugin)."""
    load_plugins()


@pytest.fixture(scope="session")
def toy_task() -> dict[str, list[Sample]]:
    """train: 8 normals; val: 4 + 4; test: 6 + 6. 64x64 images, masks for anomalies."""
    rng = np.random.default_rng(0)
    out: dict[str, list[Sample]] = {"train": [], "val": [], "test": []}
    counts = {"train": (8, 0), "val": (4, 4), "test": (6, 6)}
    row = 0
    for split, (n_normal, n_anomalous) in counts.items():
        for label, count in ((0, n_normal), (1, n_anomalous)):
            for _ in range(count):
                row += 1
                image, mask = _toy_image(rng, bool(label), 64)
                record = ImageRecord(
                    row=row, image_id=f"{split}/{row}.png", image=Path(f"/toy/{split}/{row}.png"),
                    label=label, split=split, source="real", group="toy",
                    defect="scratch" if label else "none", hard_negative=False,
                )
                out[split].append(Sample(record=record, image=image, mask=mask if label else None))
    return out


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny models on a shared 2-core machine: one intra-op thread is several times faster than two."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_context(tmp_path: Path) -> Callable[..., MethodContext]:
    """Build a MethodContext with random weights and the smoke preset; keyword overrides allowed."""

    def factory(variant: str = "default", **options: object) -> MethodContext:
        return MethodContext(
            variant=variant, seed=0, device="cpu", weights=WeightsResolver(mode="random"),
            preset=get_preset("smoke"), class_name="toy texture", work_dir=tmp_path, options=options,
        )

    return factory


def write_tiny_manifest(root: Path, n_train: int = 6, n_val: int = 4, n_test: int = 6, size: int = 48) -> Path:
    """A small real-file dataset in the manifest schema: `size`-pixel square PNGs (48), anomalies with
    masks; n_val / n_test per class."""
    from PIL import Image

    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(exist_ok=True)
    lines = ["image,label,split,source,year,group,defect,hard_negative,mask"]
    plan = [("train", 0, n_train, 2019), ("val", 0, n_val, 2020), ("val", 1, n_val, 2020),
            ("test", 0, n_test, 2024), ("test", 1, n_test, 2025)]
    for split, label, count, year in plan:
        for i in range(count):
            image, mask = _toy_image(rng, bool(label), size)
            name = f"images/{split}_{label}_{i}.png"
            Image.fromarray(image).save(root / name)
            mask_name = ""
            if label:
                mask_name = f"masks/{split}_{label}_{i}.png"
                Image.fromarray((mask * 255).astype(np.uint8)).save(root / mask_name)
            defect = "scratch" if label else "none"
            lines.append(f"{name},{label},{split},real,{year},toy-{year},{defect},false,{mask_name}")
    manifest = root / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


@pytest.fixture
def tiny_manifest(tmp_path: Path) -> Path:
    return write_tiny_manifest(tmp_path / "data")
