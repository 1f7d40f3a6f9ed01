"""Small, honest plugins for harness tests (importable by cell processes)."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

import numpy as np
import torch

from benchmarks.plugins.bundled_backbone import (
    MOBILENETV2_IN1K,
    build_mobilenetv2,
    is_substitute,
    stage_outputs,
)
from benchmarks.plugins.contract import (
    Baseline,
    FittedState,
    MapPooling,
    MethodContext,
    MethodMeta,
    Prediction,
    Protocol,
    Sample,
    VariantSpec,
)
from benchmarks.plugins.weights import WeightSpec, load_state_dict

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


class Answering(MeanBrightness):
    """Answers yes/no (score above the training mean's spread) and "where" (the brightest 3x3 cell),
    and gives no answer for every third image: the runner must score typed answers of any plugin."""

    meta = MethodMeta(name="answering", paper="test", backbone="none", weights_id="none", input_size=0,
                      variants=FULL)

    def predict(self, images: Sequence[np.ndarray]) -> Prediction:
        from benchmarks.plugins.location_grid import grid_location

        pred = super().predict(images)
        decisions: list[bool | None] = [bool(s > 10) for s in pred.scores]
        decisions = [None if i % 3 == 2 else d for i, d in enumerate(decisions)]
        locations: list[str | None] = [grid_location(im.mean(axis=2)) for im in images]
        return Prediction(scores=pred.scores, maps=pred.maps, decisions=decisions, locations=locations)


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
        pid_file = os.environ.get("BENCHMARKS_TEST_PIDFILE")
        if pid_file:
            with open(pid_file, "w") as handle:
                handle.write(str(os.getpid()))
        time.sleep(3600)


class Dying(MeanBrightness):
    meta = MethodMeta(name="dying", paper="test", backbone="none", weights_id="none", input_size=0,
                      variants=FULL)

    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> None:
        os._exit(137)


class FlatMaps(MeanBrightness):
    """Returns one row of values per image (2-D maps) instead of `(B, h, w)`."""

    meta = MethodMeta(name="flat-maps", paper="test", backbone="none", weights_id="none", input_size=0,
                      variants=FULL)

    def predict(self, images: Sequence[np.ndarray]) -> Prediction:
        pred = super().predict(images)
        return Prediction(scores=pred.scores, maps=np.ones((len(images), 16)))


class MapsSometimes(MeanBrightness):
    """Maps for full batches of 8 only: the last, shorter batch of a split comes back without them."""

    meta = MethodMeta(name="maps-sometimes", paper="test", backbone="none", weights_id="none", input_size=0,
                      variants=FULL)

    def predict(self, images: Sequence[np.ndarray]) -> Prediction:
        pred = super().predict(images)
        return pred if len(images) == 8 else Prediction(scores=pred.scores)


class BrightestSpot(Baseline):
    """Map = pixel brightness (every 2nd pixel); image score = the map's maximum, declared as its
    pooling: what ROI-guided scoring needs, and nothing else."""

    meta = MethodMeta(name="brightest-spot", paper="test", backbone="none", weights_id="none", input_size=0,
                      variants=FULL, map_pooling=MapPooling("max"))

    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> None:
        return None

    def fitted_state(self) -> FittedState:
        return FittedState(tensors={"nothing": torch.zeros(1)}, info={})

    def load_fitted_state(self, state: FittedState) -> None:
        return None

    def predict(self, images: Sequence[np.ndarray]) -> Prediction:
        maps = np.stack([im.mean(axis=2)[::2, ::2] / 255.0 for im in images])
        return Prediction(scores=maps.reshape(len(images), -1).max(axis=1).astype(np.float64), maps=maps)


class OutOfMemory(MeanBrightness):
    """Caps its own address space 256 MiB above what it uses, then asks for 16 GiB: a real MemoryError."""

    meta = MethodMeta(name="out-of-memory", paper="test", backbone="none", weights_id="none", input_size=0,
                      variants=FULL)

    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> None:
        import resource

        used = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (used + (256 << 20), resource.getrlimit(resource.RLIMIT_AS)[1]))
        self.ballast = np.ones(16 << 30, dtype=np.uint8)


class Sentinel(MeanBrightness):
    """Writes `<work_dir>/constructed` when constructed: proof that model work started."""

    meta = MethodMeta(name="sentinel", paper="test", backbone="none", weights_id="none", input_size=0,
                      variants=FULL)

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        assert context.work_dir is not None
        context.work_dir.mkdir(parents=True, exist_ok=True)
        (context.work_dir / "constructed").write_text("constructed")


class CacheProbe(MeanBrightness):
    """Appends "on"/"off" (the feature cache's state) to `<work_dir>/cache-states` at every predict call."""

    meta = MethodMeta(name="cache-probe", paper="test", backbone="none", weights_id="none", input_size=0,
                      variants=FULL)

    def predict(self, images: Sequence[np.ndarray]) -> Prediction:
        cache, folder = self.context.feature_cache, self.context.work_dir
        assert cache is not None and folder is not None
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "cache-states", "a") as handle:
            handle.write(f"{len(images)}:{'on' if cache.enabled else 'off'}\n")
        return super().predict(images)


TINY_OWN_WEIGHTS = WeightSpec(key="tiny_own_backbone", library="file", model_id="tiny own backbone (test)")


class SubstituteFeatures(MeanBrightness):
    """Asks for weights it will not find (unless a test provides them) with the bundled MobileNetV2 as
    substitute: score = distance of the image's mean `blocks.1` feature from the normals' mean."""

    meta = MethodMeta(name="substitute-features", paper="test", backbone="tiny", weights_id="none", input_size=32,
                      variants=FULL, weight_specs=(TINY_OWN_WEIGHTS, MOBILENETV2_IN1K))

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        resolved = context.weights.resolve(TINY_OWN_WEIGHTS, substitute=MOBILENETV2_IN1K)
        self.model = build_mobilenetv2(resolved if is_substitute(resolved) else None)
        if resolved.mode == "pretrained":  # its "own" weights: a MobileNetV2 state dict in timm's keys
            assert resolved.path is not None
            self.model.load_state_dict(load_state_dict(resolved.path), strict=True)

    def _features(self, images: Sequence[np.ndarray]) -> np.ndarray:
        x = torch.stack([torch.from_numpy(np.ascontiguousarray(im[:32, :32])).permute(2, 0, 1).float() / 255
                         for im in images])
        with torch.inference_mode():
            return stage_outputs(self.model, x, ("blocks.1",))["blocks.1"].mean(dim=(2, 3)).numpy()

    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> None:
        self.center = self._features([s.image for s in train]).mean(axis=0)

    def predict(self, images: Sequence[np.ndarray]) -> Prediction:
        return Prediction(scores=np.linalg.norm(self._features(images) - self.center, axis=1).astype(np.float64))


ALL = {"mean-brightness": MeanBrightness, "answering": Answering, "substitute-features": SubstituteFeatures, "crashing": Crashing, "nan-scores": NanScores,
       "hanging": Hanging, "dying": Dying, "flat-maps": FlatMaps, "maps-sometimes": MapsSometimes,
       "out-of-memory": OutOfMemory, "brightest-spot": BrightestSpot, "sentinel": Sentinel, "cache-probe": CacheProbe}


def register_all() -> None:
    from benchmarks.plugins.registry import BASELINES

    for name, cls in ALL.items():
        if name not in BASELINES:
            BASELINES.add(name, cls)


register_all()
