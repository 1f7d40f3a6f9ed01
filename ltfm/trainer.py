"""Training LTFM on frozen-tower features computed once per image.

The tower is frozen, so its features are computed once per image (`FeatureMemory`: in memory as
float16, backed by a shared on-disk store when the caller provides one) and only
LTFM (with its classifier head) is trained. AdamW with linear warm-up and cosine decay; loss =
class-balanced BCE on the image label + `map_loss_weight` x focal (or BCE) loss of the
significance map M against the mask max-pooled to the token grid. Normal images count as
all-zero masks; for an anomaly without a mask the map's maximum is pushed towards 1 (BCE, same
weight: the multiple-instance form of the same supervision). Early stopping on the validation
AUROC of the image score `TrainConfig.score` (ties broken by validation loss; loss alone when
validation has one class), restoring the best epoch. Seeded: `torch.manual_seed`, a seeded
shuffling generator and deterministic algorithms for the duration of training.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score

from ltfm.anyres import AnyResGrid, stitch_maps
from ltfm.module import LTFM, LTFMOutput
from ltfm.towers import VisionTower, encode_images

log = logging.getLogger(__name__)

MAP_LOSSES = ("focal", "bce", "none")
IMAGE_SCORES = ("head", "map", "mean")
# (epochs, patience) per run preset; options override.
SCHEDULES: dict[str, tuple[int, int]] = {"smoke": (4, 2), "default": (15, 4), "paper": (60, 10)}


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of one training run; `epochs`/`patience` usually come from `schedule(preset)`."""

    epochs: int = 15
    patience: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-2
    batch_size: int = 16
    map_loss: str = "focal"
    map_loss_weight: float = 1.0
    focal_gamma: float = 2.0
    score: str = "head"
    """What early stopping ranks epochs by: the image score of `image_scores` (head, map or mean)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.map_loss not in MAP_LOSSES:
            raise ValueError(f"map_loss must be one of {MAP_LOSSES}, got {self.map_loss!r}")
        if self.score not in IMAGE_SCORES:
            raise ValueError(f"score must be one of {IMAGE_SCORES}, got {self.score!r}")
        if self.epochs < 1 or self.patience < 1 or self.batch_size < 1:
            raise ValueError("epochs, patience and batch_size must be >= 1")


def schedule(preset_name: str, **overrides: Any) -> TrainConfig:
    """`TrainConfig` with the preset's epochs/patience (unknown presets get "default"), then overrides."""
    epochs, patience = SCHEDULES.get(preset_name, SCHEDULES["default"])
    return replace(TrainConfig(epochs=epochs, patience=patience), **overrides)


@contextmanager
def deterministic(seed: int) -> Iterator[None]:
    """Seed torch and switch on deterministic algorithms, restoring the previous setting afterwards."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


@dataclass
class FeatureSet:
    """Cached features of n images: features `(n, C, L, N, W)` float16, labels `(n,)`,
    map_targets `(n, C, gh, gw)` in [0, 1], has_map `(n,)` (False: no map loss for that image),
    the crop grid the features were taken with and each image's `(height, width)`."""

    features: torch.Tensor
    labels: torch.Tensor
    map_targets: torch.Tensor
    has_map: torch.Tensor
    crops: AnyResGrid
    sizes: list[tuple[int, int]]

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def two_classes(self) -> bool:
        return 0 < int(self.labels.sum()) < len(self)


def map_targets(
    masks: Sequence[np.ndarray | None], labels: Sequence[int], grid: tuple[int, int], crops: AnyResGrid
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-crop mask targets `(n, C, gh, gw)` (a cell is 1 if any of its pixels is defective) and has_map `(n,)`;
    the masks are cut into the same crops as their images."""
    targets = torch.zeros(len(labels), crops.num_crops, *grid)
    has_map = torch.zeros(len(labels), dtype=torch.bool)
    for i, (mask, label) in enumerate(zip(masks, labels, strict=True)):
        if mask is None:
            has_map[i] = label == 0
            continue
        has_map[i] = True
        for c, crop in enumerate(crops.crops(np.asarray(mask, dtype=np.float32))):
            targets[i, c] = F.adaptive_max_pool2d(torch.from_numpy(np.ascontiguousarray(crop))[None], grid)[0]
    return targets, has_map


class FeatureStore(Protocol):
    """A shared feature store (the benchmark suite passes its on-disk feature cache)."""

    def map(self, namespace: str, images: Sequence[np.ndarray],
            compute: Callable[[Sequence[np.ndarray]], torch.Tensor]) -> torch.Tensor:
        """Per-image features `(B, ...)`: stored ones loaded, the rest from one `compute` call and stored."""
        ...


class FeatureMemory:
    """Frozen-tower features per image, computed once: memory first, then the `shared` store when
    one is given, then the tower.

    `namespace` must change whenever the features would (tower, input size, weights); the crop
    grid is added to it here.
    """

    def __init__(
        self, tower: VisionTower, namespace: str, crops: AnyResGrid | None = None, device: str = "cpu",
        shared: FeatureStore | None = None, batch_size: int = 16,
    ) -> None:
        self.tower = tower
        self.crops = crops or AnyResGrid.global_only(tower.image_size)
        self.namespace = f"{namespace}|crops={self.crops.describe()}"
        self.device = device
        self.shared = shared
        self.batch_size = batch_size
        self._memory: dict[str, torch.Tensor] = {}

    def features(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 images -> float16 `(n, C, L, N, W)`."""
        keys = [_content_key(image) for image in images]
        todo = list({k: i for i, k in enumerate(keys) if k not in self._memory}.values())
        if todo:
            pending = [images[i] for i in todo]
            if self.shared is not None:
                computed = self.shared.map(self.namespace, pending, self._encode)
            else:
                computed = self._encode(pending)
            for i, feats in zip(todo, computed, strict=True):
                self._memory[keys[i]] = feats
        return torch.stack([self._memory[k] for k in keys])

    def feature_set(
        self, images: Sequence[np.ndarray], labels: Sequence[int], masks: Sequence[np.ndarray | None]
    ) -> FeatureSet:
        targets, has_map = map_targets(masks, labels, self.tower.grid, self.crops)
        return FeatureSet(self.features(images), torch.tensor(labels, dtype=torch.float32), targets, has_map,
                          self.crops, [(int(im.shape[0]), int(im.shape[1])) for im in images])

    def _encode(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        return encode_images(self.tower, images, self.crops, self.device, self.batch_size).half()


def _content_key(image: np.ndarray) -> str:
    digest = hashlib.sha1(str(image.shape).encode())
    digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


@dataclass
class TrainResult:
    """What a run did: epochs run, the restored best epoch (1-based), per-epoch history, seconds."""

    epochs_run: int
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def best(self) -> dict[str, float]:
        return self.history[self.best_epoch - 1] if self.history else {}


def warmup_cosine(step: int, steps: int) -> float:
    """Learning-rate factor: linear warm-up over the first 5 % of `steps`, then cosine decay to 0."""
    warmup = max(1, steps // 20)
    return min(1.0, (step + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / steps))


def focal_loss(prob: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Mean binary focal loss of probabilities vs targets (same shapes)."""
    p = prob.clamp(1e-6, 1 - 1e-6)
    pt = torch.where(target > 0.5, p, 1 - p)
    return (-((1 - pt) ** gamma) * torch.log(pt)).mean()


def ltfm_loss(out: LTFMOutput, labels: torch.Tensor, targets: torch.Tensor, has_map: torch.Tensor,
              config: TrainConfig, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    loss = F.binary_cross_entropy_with_logits(out.logit, labels, pos_weight=pos_weight)
    if config.map_loss != "none" and bool(has_map.any()):
        prob, target = out.significance_map[has_map], targets[has_map]
        if config.map_loss == "focal":
            map_loss = focal_loss(prob, target, config.focal_gamma)
        else:
            map_loss = F.binary_cross_entropy(prob.clamp(1e-6, 1 - 1e-6), target)
        loss = loss + config.map_loss_weight * map_loss
    weak = (labels > 0.5) & ~has_map
    if config.map_loss != "none" and bool(weak.any()):
        # an anomaly without a mask: somewhere in its map must be anomalous (multiple-instance learning)
        peak = out.significance_map[weak].flatten(1).max(dim=1).values.clamp(1e-6, 1 - 1e-6)
        loss = loss + config.map_loss_weight * F.binary_cross_entropy(peak, torch.ones_like(peak))
    return loss


def image_scores(head: np.ndarray, maps: Sequence[np.ndarray], kind: str) -> np.ndarray:
    """Image anomaly scores `(n,)` from LTFM's head probabilities `(n,)` and each image's stitched map.

    head: the paper's score (sigmoid of the classifier head); map: the maximum of the stitched
    significance map; mean: the average of the two. All three lie in [0, 1].
    """
    if kind == "head":
        return head
    peaks = np.array([float(m.max()) for m in maps], dtype=head.dtype)
    return peaks if kind == "map" else (head + peaks) / 2


@torch.no_grad()
def evaluate(model: LTFM, data: FeatureSet, config: TrainConfig, device: str = "cpu") -> dict[str, float]:
    """Mean loss and (two classes only) AUROC of `model`'s `config.score` image scores on `data`, in one pass."""
    model.eval()
    losses, heads, maps = [], [], []
    for idx in torch.arange(len(data)).split(config.batch_size):
        out = model(data.features[idx].to(device).float())
        losses.append(float(ltfm_loss(out, data.labels[idx].to(device), data.map_targets[idx].to(device),
                                      data.has_map[idx].to(device), config)) * len(idx))
        heads.append(out.score.cpu())
        maps.append(out.significance_map.cpu())
    result = {"loss": sum(losses) / len(data)}
    if data.two_classes:
        scores, _ = _scores_and_maps(data, heads, maps, config.score)
        result["auroc"] = float(roc_auc_score(data.labels.numpy(), scores))
    return result


def _scores_and_maps(data: FeatureSet, heads: list[torch.Tensor], maps: list[torch.Tensor],
                     score: str) -> tuple[np.ndarray, list[np.ndarray]]:
    """Batched head probabilities and crop maps of `data` -> image scores `(n,)` and stitched maps."""
    stitched = stitch_maps(data.crops, torch.cat(maps).numpy(), data.sizes)
    return image_scores(torch.cat(heads).numpy(), stitched, score), stitched


def selection_key(record: dict[str, float]) -> tuple[float, float]:
    """Epoch ranking, higher is better: val AUROC, then lower val loss; without validation, the later epoch."""
    if "val_loss" not in record:
        return record["epoch"], 0.0
    return record.get("val_auroc", 0.0), -record["val_loss"]


def train_ltfm(model: LTFM, train: FeatureSet, val: FeatureSet | None, config: TrainConfig,
               device: str = "cpu") -> TrainResult:
    """Train `model` in place on `train`, early-stopping on `val` (no val: all epochs, keep the last)."""
    started = time.perf_counter()
    if not train.two_classes:
        log.warning("LTFM training data has a single class (%d images); the classifier cannot learn a boundary",
                    len(train))
    n_pos = float(train.labels.sum())
    pos_weight = torch.tensor((len(train) - n_pos) / n_pos, device=device) if train.two_classes else None
    history: list[dict[str, float]] = []
    best_key: tuple[float, float] | None = None
    best_state: dict[str, torch.Tensor] = {}
    best_epoch, stale = 0, 0
    with deterministic(config.seed):
        model.to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        optimiser = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        shuffle = torch.Generator().manual_seed(config.seed)
        steps = config.epochs * math.ceil(len(train) / config.batch_size)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, partial(warmup_cosine, steps=steps))
        for epoch in range(1, config.epochs + 1):
            model.train()
            total = 0.0
            for idx in torch.randperm(len(train), generator=shuffle).split(config.batch_size):
                out = model(train.features[idx].to(device).float())
                loss = ltfm_loss(out, train.labels[idx].to(device), train.map_targets[idx].to(device),
                                 train.has_map[idx].to(device), config, pos_weight)
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                scheduler.step()
                total += float(loss.detach()) * len(idx)
            record = {"epoch": float(epoch), "train_loss": total / len(train)}
            if val is not None and len(val):
                record.update({f"val_{k}": v for k, v in evaluate(model, val, config, device).items()})
            record["seconds"] = time.perf_counter() - started
            history.append(record)
            log.info("ltfm epoch %d: %s", epoch, ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch"))
            key = selection_key(record)
            if best_key is None or key > best_key:
                best_key, best_epoch, stale = key, epoch, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
                if stale >= config.patience:
                    break
        model.load_state_dict(best_state)
    model.eval()
    return TrainResult(len(history), best_epoch, history, time.perf_counter() - started)


@torch.no_grad()
def predict_features(model: LTFM, data: FeatureSet, score: str = "head", batch_size: int = 32,
                     device: str = "cpu") -> tuple[np.ndarray, list[np.ndarray]]:
    """Image scores `(n,)` (see `image_scores`) and each image's stitched significance map for cached features."""
    model.eval()
    heads, maps = [], []
    for chunk in data.features.split(batch_size):
        out = model(chunk.to(device).float())
        heads.append(out.score.cpu())
        maps.append(out.significance_map.cpu())
    return _scores_and_maps(data, heads, maps, score)
