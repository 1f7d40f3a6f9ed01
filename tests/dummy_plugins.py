"""Small, honest plugins for harness tests (importable by cell processes)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np

from benchmarks.contract import Baseline, MethodMeta, Prediction, Protocol, Sample, VariantSpec

FULL = {"default": VariantSpec(Protocol.FULL_SHOT)}


class MeanBrightness(Baseline):
    """Score = distance of the image's brightest 1 % pixels from the normal training mean of that statistic."""

    meta = MethodMeta(name="mean-brightness", paper="test", backbone="none", weights_id="none",
                      input_size=0, variants=FULL)

    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> None:
        stats = [self._stat(s.image) for s in train]
        self.center = float(np.mean(stats)) if stats else 0.0

    @staticmethod
    def _stat(image: np.ndarray) -> float:
        return float(np.percentile(image.mean(axis=2), 99))

    def predict(self, images: Sequence[np.ndarray]) -> Prediction:
        scores = np.array([abs(self._stat(im) - self.center) for im in images])
        maps = np.stack([np.abs(im.mean(axis=2)[::4, ::4] / 255.0 - self.center / 255.0) for im in images])
        return Prediction(scores=scores, maps=maps)


class Crashing(MeanBrightness):
    meta = MethodMeta(name="crashing", paper="test", backbone="none", weights_id="none", input_size=0,
                      variants=FULL)

    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> None:
        raise RuntimeError("planted failure in fit")


class NanScores(MeanBrightness):
    meta = MethodMeta(name="nan-scores", paper="test", backbone="none", weights_id="none", input_size=0,
                      variants=FULL)

    def predict(self, images: Sequence[np.ndarray]) -> Prediction:
        return Prediction(scores=np.full(len(images), np.nan))


class Hanging(MeanBrightness):
    meta = MethodMeta(name="hanging", paper="test", backbone="none", weights_id="none", input_size=0,
                      variants=FULL)

    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> None:
        time.sleep(3600)


class Dying(MeanBrightness):
    meta = MethodMeta(name="dying", paper="test", backbone="none", weights_id="none", input_size=0,
                      variants=FULL)

    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> None:
        os._exit(137)


ALL = {"mean-brightness": MeanBrightness, "crashing": Crashing, "nan-scores": NanScores,
       "hanging": Hanging, "dying": Dying}


def register_all() -> None:
    from benchmarks.registry import BASELINES

    for name, cls in ALL.items():
        if name not in BASELINES:
            BASELINES.add(name, cls)


register_all()
