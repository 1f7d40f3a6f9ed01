"""PatchCore fit: this suite's plugin against anomalib 2.7's own `Patchcore` fit, same data, same backbone.

Data: `elpv` at scale 1.0 (150 mono normals to fit; 100 + 100 poly test images), 256 px without a
crop (anomalib's pipeline), WideResNet-50-2 layers 2+3, 10 % coreset. Both sides use the very same
backbone weights and embeddings; they differ only in what anomalib's fit does after embedding:
its `KCenterGreedy` (one full pass over the bank per pick) against `greedy_coreset` (batched).

anomalib's selection of ~15,000 picks takes over 20 minutes on 2 cores, so by default it is timed
for `ANOMALIB_PICKS` picks and extrapolated linearly (every pick costs the same full pass). Set
`BENCH_ANOMALIB_FULL=1` to run it to the end and also compare AUROC of the two memory banks
(`BENCH_TRAIN_IMAGES=30` makes that affordable: 30,720 rows, 3,072 picks).

    pytest tests/benchmarks/test_patchcore_fit_vs_anomalib.py --benchmark-only -s
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from anomalib.models.components.sampling import KCenterGreedy
from anomalib.models.image.patchcore.torch_model import PatchcoreModel
from sklearn.metrics import roc_auc_score

from baselines.common import batches
from baselines.neighbours import NearestNeighbourIndex
from baselines.patchcore import PatchCore
from benchmarks.data.loaders import load_dataset
from benchmarks.plugins.contract import MethodContext
from benchmarks.plugins.weights import WeightsResolver
from benchmarks.running.cell import load_samples
from benchmarks.running.presets import get_preset

ANOMALIB_PICKS = 300
OPTIONS = {"image_size": 256, "crop_size": 256, "coreset_ratio": 0.1}


def _auroc(plugin: PatchCore, bank: np.ndarray, test_images: list[np.ndarray], labels: np.ndarray) -> float:
    index = NearestNeighbourIndex(bank, "l2")
    scores = []
    for chunk in batches(test_images, 16):
        embedding = plugin.embed(plugin.preprocess(chunk))
        flat = PatchcoreModel.reshape_embedding(embedding).float().cpu().numpy()
        scores.append(index.search(flat, k=1)[:, 0].reshape(len(chunk), -1).max(axis=1))
    return float(roc_auc_score(labels, np.concatenate(scores)))


def _select(bank: torch.Tensor, picks: int) -> tuple[float, list[int]]:
    """Seconds for anomalib's `KCenterGreedy` (random projection + greedy loop) to make `picks` picks."""
    torch.manual_seed(0)
    sampler = KCenterGreedy(bank, sampling_ratio=OPTIONS["coreset_ratio"])
    sampler.coreset_size = picks
    start = time.perf_counter()
    with torch.no_grad():  # outside a no-grad block each pick's (N, d) temporary stays alive (~30 MB/pick)
        chosen = sampler.select_coreset_idxs()
    return time.perf_counter() - start, chosen


def test_patchcore_fit_against_anomalib(benchmark: Any, tmp_path: Path) -> None:
    dataset = load_dataset("elpv")
    normals = [r for r in dataset.split("train") if r.label == 0]
    train = load_samples(normals[: int(os.environ.get("BENCH_TRAIN_IMAGES", len(normals)))], with_masks=False)
    test = load_samples(list(dataset.split("test")), with_masks=False)
    labels = np.array([s.label for s in test])
    context = MethodContext(variant="default", seed=0, device="cpu", weights=WeightsResolver(mode="random"),
                            preset=get_preset("default"), class_name=dataset.class_name, work_dir=tmp_path,
                            options=OPTIONS)
    plugin = PatchCore(context)

    start = time.perf_counter()
    benchmark.pedantic(lambda: plugin.fit(train), rounds=1, iterations=1)
    ours_s = time.perf_counter() - start
    assert plugin.memory_bank is not None
    ours_auroc = _auroc(plugin, plugin.memory_bank, [s.image for s in test], labels)

    start = time.perf_counter()  # anomalib's fit: the same embeddings, then its own coreset
    bank = torch.cat([PatchcoreModel.reshape_embedding(plugin.embed(plugin.preprocess(chunk))).float()
                      for chunk in batches([s.image for s in train], 16)])
    embed_s = time.perf_counter() - start
    wanted = int(len(bank) * OPTIONS["coreset_ratio"])
    if os.environ.get("BENCH_ANOMALIB_FULL") == "1":
        full = True
        select_s, picks = _select(bank, wanted)
    else:  # projection + 1 pick, then + ANOMALIB_PICKS more: the difference is the per-pick cost
        full = False
        one_s, _ = _select(bank, 1)
        more_s, picks = _select(bank, 1 + ANOMALIB_PICKS)
        select_s = one_s + (more_s - one_s) / ANOMALIB_PICKS * (wanted - 1)
    anomalib_s = embed_s + select_s

    report = {"train_images": len(train), "bank_rows": len(bank), "coreset_rows": wanted, "ours_fit_s": round(ours_s, 1),
              "anomalib_fit_s": round(anomalib_s, 1), "anomalib_extrapolated": not full,
              "anomalib_embed_s": round(embed_s, 1), "speedup": round(anomalib_s / ours_s, 1),
              "ours_auroc": round(ours_auroc, 4)}
    if full:
        report["anomalib_auroc"] = round(_auroc(plugin, bank[picks].numpy(), [s.image for s in test], labels), 4)
    benchmark.extra_info.update(report)
    print(report)
    if len(train) >= 150:  # issue 6's setting; on fewer images the shared embedding time dominates both
        assert anomalib_s / ours_s >= 10
    if full:
        assert abs(report["anomalib_auroc"] - ours_auroc) <= 0.02
