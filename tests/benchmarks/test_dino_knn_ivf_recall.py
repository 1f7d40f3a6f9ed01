"""How approximate dino-knn's default IVF search is on the embedded smartphone set (issue 17).

dino-knn's `full` variant searches banks above 100,000 rows with faiss IVF + exact re-ranking
(`NearestNeighbourIndex`, kind "auto"). This builds the variant exactly as a default-preset cell
does (offline: the bundled substitute backbone), then compares its searches with an exact flat
search over the same bank on every test patch: recall@1 (the IVF neighbour is an exact nearest
neighbour, distance within 1e-6) and the largest distance error. The AUROC effect is measured by
two ordinary cells (`run --methods dino-knn --variants full`, with and without
`--option dino-knn.exact_search=true`); docs/faithfulness.md records both.

    .venv/bin/pytest tests/benchmarks/test_dino_knn_ivf_recall.py -q -s
"""

from __future__ import annotations

import numpy as np
import pytest

from baselines import dino_knn
from baselines.dino_knn import DinoKnn
from baselines.neighbours import NearestNeighbourIndex
from benchmarks.data.loaders import load_dataset
from benchmarks.plugins.contract import MethodContext
from benchmarks.plugins.weights import WeightsResolver
from benchmarks.running.cell import cap_eval, load_samples, select_train
from benchmarks.running.presets import get_preset


def test_ivf_recall_on_the_embedded_set(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    preset = get_preset("default")
    dataset = load_dataset("smartphone-synth", scale=preset.data_scale)
    spec = DinoKnn.meta.variants["full"]
    train = load_samples(select_train(dataset.records, spec, 0, preset.max_train_images), with_masks=False)
    test = load_samples(cap_eval(dataset.split("test"), preset.max_eval_images), with_masks=False)
    banks: list[np.ndarray] = []

    class Recording(NearestNeighbourIndex):
        def __init__(self, bank, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
            banks.append(np.asarray(bank))
            super().__init__(bank, *args, **kwargs)

    monkeypatch.setattr(dino_knn, "NearestNeighbourIndex", Recording)
    plugin = DinoKnn(MethodContext(variant="full", seed=0, device="cpu", weights=WeightsResolver(mode="auto"),
                                   preset=preset, class_name=dataset.class_name, work_dir=tmp_path))
    plugin.fit(train)
    assert plugin.index is not None
    (bank,) = banks
    exact = NearestNeighbourIndex(bank, "cosine", kind="flat")
    found, truth = [], []
    for _, tokens in plugin._tokens([s.image for s in test]):
        queries = tokens.reshape(-1, tokens.shape[-1])
        found.append(plugin.index.search(queries)[:, 0])
        truth.append(exact.search(queries)[:, 0])
    approx, best = np.concatenate(found), np.concatenate(truth)
    recall = float(np.mean(np.abs(approx - best) <= 1e-6))
    print(f"\ndino-knn full on smartphone-synth (default preset, {plugin.index.kind} index): bank {bank.shape}, "
          f"{len(best)} test patches, recall@1 {recall:.4f}, max distance excess {float((approx - best).max()):.2e}, "
          f"mean excess {float((approx - best).mean()):.2e}")
    assert plugin.index.kind == "ivf"  # the bank is above the exact-search limit
    assert (approx >= best - 1e-6).all()  # an approximate neighbour is never closer than the exact one
    assert recall >= 0.9
