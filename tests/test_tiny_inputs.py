"""Images smaller than a model's input (down to 1x1) and extreme aspect ratios, through every built-in plugin.

Each plugin resizes to its own input size, so a 3x5 photo must give finite scores and maps of the
contract's shape, not a crash deep inside a backbone (a 1-pixel image once meant a zero-size crop).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from test_anomalygpt import TINY as ANOMALYGPT_TINY
from test_dino_knn import TINY as DINO_TINY
from test_ltfm import TINY as LTFM_TINY
from test_patchcore import TINY as PATCHCORE_TINY
from test_winclip import TINY_CLIP

from baselines.anomalygpt import AnomalyGPT
from baselines.dino_knn import DinoKnn
from baselines.ltfm_plugin import LTFMBaseline
from baselines.patchcore import PatchCore
from baselines.winclip import WinClip
from benchmarks.contract import Baseline, MethodContext, Sample

pytestmark = pytest.mark.usefixtures("one_thread")

PLUGINS: dict[str, tuple[type[Baseline], str, dict[str, object]]] = {
    "patchcore": (PatchCore, "k1", PATCHCORE_TINY),
    "winclip": (WinClip, "k0", {"model_overrides": TINY_CLIP}),
    "dino-knn": (DinoKnn, "k1", DINO_TINY),
    "anomalygpt": (AnomalyGPT, "k1", {"model_overrides": ANOMALYGPT_TINY}),
    "ltfm": (LTFMBaseline, "ft-real", {"init": "scratch", "epochs": 1, **LTFM_TINY}),
}
SHAPES = [(1, 1), (3, 5), (7, 300), (300, 7)]


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_images_below_the_model_input_give_valid_predictions(
    name: str, make_context: Callable[..., MethodContext], toy_task: dict[str, list[Sample]]
) -> None:
    cls, variant, options = PLUGINS[name]
    torch.manual_seed(0)
    plugin = cls(make_context(variant, **options))
    plugin.fit(toy_task["train"][:4] + toy_task["test"][-2:], toy_task["val"])  # ltfm's ft-real needs both labels
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SHAPES]
    pred = plugin.predict(images)
    pred.check(len(images))  # scores finite, maps (B, h, w) and finite, texts/extras per image
    assert np.isfinite(pred.scores).all()
    if pred.maps is not None:
        assert min(np.asarray(pred.maps).shape[1:]) >= 1
    one = plugin.predict(images[:1])  # batch size 1, as the latency runner calls it
    one.check(1)
