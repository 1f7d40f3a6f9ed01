"""Images smaller than a model's input (down to 1x1) and extreme aspect ratios, through every installed plugin.

Each plugin resizes to its own input size, so a 3x5 photo must give finite scores and maps of the
contract's shape, not a crash deep inside a backbone (a 1-pixel image once meant a zero-size crop).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
from conftest import installed_methods

from benchmarks.plugins.contract import MethodContext, Sample

pytestmark = pytest.mark.usefixtures("one_thread")


PLUGINS = installed_methods()
SHAPES = [(1, 1), (3, 5), (7, 300), (300, 7)]


def test_the_suites_methods_and_families_are_all_here() -> None:
    assert {"patchcore", "winclip", "dino-knn", "anomalygpt", "ltfm", "anomalib:Padim"} <= set(PLUGINS)


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_every_registered_method_declares_a_tiny_setup(name: str) -> None:
    assert PLUGINS[name][1] is not None, f"{name}: declare MethodMeta.tiny so the contract tests can run it small"


@pytest.mark.parametrize("name", sorted(PLUGINS))
def test_images_below_the_model_input_give_valid_predictions(
    name: str, make_context: Callable[..., MethodContext], toy_task: dict[str, list[Sample]]
) -> None:
    cls, tiny = PLUGINS[name]
    if tiny is None:
        pytest.skip(f"{name} declares no tiny setup (see the test above)")
    torch.manual_seed(0)
    plugin = cls(make_context(tiny.variant, **tiny.options))
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
