"""Training LTFM on cached frozen-tower features; the synthetic source domain for the `base` variant.

The tower is frozen, so its features are computed once per image (`FeatureCache`: in memory as
float16, and in the suite's shared on-disk feature cache when the runner provides one) and only
LTFM (with its classifier head) is trained. AdamW with linear warm-up and cosine decay; loss =
class-balanced BCE on the image label + `map_loss_weight` x focal (or BCE) loss of the
significance map M against the mask max-pooled to the token grid. Normal images count as
all-zero masks; anomalies without a mask get no map loss. Early stopping on validation AUROC
(ties broken by validation loss; loss alone when validation has one class), restoring the best
epoch. Seeded: `torch.manual_seed`, a seeded shuffling generator and deterministic algorithms
for the duration of training.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from benchmarks.plugins.feature_cache import FeatureCache as SharedFeatureCache
from ltfm.module import LTFM, LTFMOutput
from ltfm.towers import VisionTower, crop_images, encode_images

log = logging.getLogger(__name__)

MAP_LOSSES = ("focal", "bce", "none")
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
    seed: int = 0

    def __post_init__(self) -> None:
        if self.map_loss not in MAP_LOSSES:
            raise ValueError(f"map_loss must be one of {MAP_LOSSES}, got {self.map_loss!r}")
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
    map_targets `(n, C, gh, gw)` in [0, 1], has_map `(n,)` (False: no map loss for that image)."""

    features: torch.Tensor
    labels: torch.Tensor
    map_targets: torch.Tensor
    has_map: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def two_classes(self) -> bool:
        return 0 < int(self.labels.sum()) < len(self)


def map_targets(
    masks: Sequence[np.ndarray | None], labels: Sequence[int], grid: tuple[int, int], anyres: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-crop mask targets `(n, C, gh, gw)` (a cell is 1 if any of its pixels is defective) and has_map `(n,)`."""
    crops = 5 if anyres else 1
    targets = torch.zeros(len(labels), crops, *grid)
    has_map = torch.zeros(len(labels), dtype=torch.bool)
    for i, (mask, label) in enumerate(zip(masks, labels, strict=True)):
        if mask is None:
            has_map[i] = label == 0
            continue
        has_map[i] = True
        for c, crop in enumerate(crop_images([np.asarray(mask, dtype=np.float32)], anyres)[0]):
            targets[i, c] = F.adaptive_max_pool2d(torch.from_numpy(np.ascontiguousarray(crop))[None], grid)[0]
    return targets, has_map


class FeatureCache:
    """Frozen-tower features per image, computed once: memory first, then the suite's shared disk
    cache (`benchmarks.plugins.feature_cache.FeatureCache`, when the runner provides one), then the tower.

    `namespace` must change whenever the features would (tower, input size, crops, weights).
    """

    def __init__(
        self, tower: VisionTower, namespace: str, anyres: bool = False, device: str = "cpu",
        shared: SharedFeatureCache | None = None, batch_size: int = 16,
    ) -> None:
        self.tower = tower
        self.namespace = namespace
        self.anyres = anyres
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
        targets, has_map = map_targets(masks, labels, self.tower.grid, self.anyres)
        return FeatureSet(self.features(images), torch.tensor(labels, dtype=torch.float32), targets, has_map)

    def _encode(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        return encode_images(self.tower, images, self.anyres, self.device, self.batch_size).half()


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
    return loss


@torch.no_grad()
def evaluate(model: LTFM, data: FeatureSet, config: TrainConfig, device: str = "cpu") -> dict[str, float]:
    """Mean loss and (two classes only) AUROC of `model` on `data`."""
    model.eval()
    scores, losses = [], []
    for idx in torch.arange(len(data)).split(config.batch_size):
        out = model(data.features[idx].to(device).float())
        losses.append(float(ltfm_loss(out, data.labels[idx].to(device), data.map_targets[idx].to(device),
                                      data.has_map[idx].to(device), config)) * len(idx))
        scores.append(out.score.cpu())
    result = {"loss": sum(losses) / len(data)}
    if data.two_classes:
        result["auroc"] = float(roc_auc_score(data.labels.numpy(), torch.cat(scores).numpy()))
    return result


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
            history.append(record)
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
def predict_features(model: LTFM, features: torch.Tensor, batch_size: int = 32,
                     device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Scores `(n,)` and significance maps `(n, C, gh, gw)` for cached features `(n, C, L, N, W)`."""
    model.eval()
    scores, maps = [], []
    for chunk in features.split(batch_size):
        out = model(chunk.to(device).float())
        scores.append(out.score.cpu())
        maps.append(out.significance_map.cpu())
    return torch.cat(scores).numpy(), torch.cat(maps).numpy()


# --- The synthetic source domain of the `base` variant -------------------------------------------

ANOMALY_KINDS = ("stroke", "blob", "patch", "spots", "blur")


def synthetic_source_domain(
    n: int, size: int = 256, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """`n` procedural textures, every other one with a synthetic anomaly -> [(RGB uint8, bool mask, label)].

    Textures mix a base colour, oriented gratings, smooth noise at a random scale, a gradient and
    sensor noise. Anomalies (a random kind per image): a polyline stroke, a colour blob, a patch
    of another texture pasted in, a cluster of spots, or a locally blurred region. Nothing is
    drawn from any benchmark dataset: this is the generic source domain LTFM's `base` is trained on.
    """
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image = _texture(rng, size)
        mask = np.zeros((size, size), dtype=bool)
        label = i % 2
        if label:
            image, mask = _anomaly(rng, image, str(rng.choice(ANOMALY_KINDS)))
        out.append(((np.clip(image, 0, 1) * 255).astype(np.uint8), mask, label))
    return out


def _texture(rng: np.random.Generator, size: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.broadcast_to(rng.uniform(0.15, 0.85, 3), (size, size, 3)).copy()
    for _ in range(int(rng.integers(0, 3))):
        theta, freq = rng.uniform(0, math.pi), rng.uniform(2, 40)
        wave = np.sin(2 * math.pi * freq * (xx * math.cos(theta) + yy * math.sin(theta)) + rng.uniform(0, 6.3))
        image += rng.uniform(0.02, 0.15) * wave[..., None] * rng.uniform(0.5, 1.0, 3)
    noise = ndimage.gaussian_filter(rng.normal(size=(size, size)), rng.uniform(1, 12))
    image += rng.uniform(0.0, 0.12) * (noise / (noise.std() + 1e-8))[..., None]
    angle = rng.uniform(0, 2 * math.pi)
    image += rng.uniform(-0.15, 0.15) * (xx * math.cos(angle) + yy * math.sin(angle))[..., None]
    return image + rng.normal(0, rng.uniform(0.0, 0.03), image.shape)


def _anomaly(rng: np.random.Generator, image: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    size = image.shape[0]
    canvas = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(canvas)
    cx, cy = rng.integers(size // 8, size - size // 8, 2)
    if kind == "stroke":
        points = [(int(cx), int(cy))]
        for _ in range(int(rng.integers(1, 4))):
            x, y = points[-1]
            points.append((int(x + rng.integers(-size // 4, size // 4)), int(y + rng.integers(-size // 4, size // 4))))
        draw.line(points, fill=255, width=int(rng.integers(1, 4)))
    elif kind in ("blob", "blur"):
        rx, ry = rng.integers(size // 40 + 2, size // 10 + 3, 2)
        draw.ellipse([int(cx - rx), int(cy - ry), int(cx + rx), int(cy + ry)], fill=255)
    elif kind == "patch":
        w, h = rng.integers(size // 12, size // 4, 2)
        draw.rectangle([int(cx - w // 2), int(cy - h // 2), int(cx + w // 2), int(cy + h // 2)], fill=255)
    else:  # spots
        for _ in range(int(rng.integers(3, 12))):
            x, y = np.array([cx, cy]) + rng.integers(-size // 12, size // 12, 2)
            r = int(rng.integers(1, 4))
            draw.ellipse([int(x - r), int(y - r), int(x + r), int(y + r)], fill=255)
    mask = np.asarray(canvas) > 0
    out = image.copy()
    if kind == "patch":
        out[mask] = _texture(rng, size)[mask]
    elif kind == "blur":
        out[mask] = ndimage.gaussian_filter(image, (4, 4, 0))[mask] + rng.normal(0, 0.05, (int(mask.sum()), 3))
    else:
        colour = np.clip(out[mask].mean(0) + rng.choice([-1, 1]) * rng.uniform(0.2, 0.5, 3), 0, 1)
        alpha = rng.uniform(0.6, 1.0)
        out[mask] = (1 - alpha) * out[mask] + alpha * colour
    return out, mask
