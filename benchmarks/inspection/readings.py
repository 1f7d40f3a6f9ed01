"""Reading one image with a fitted model: verdict at the validation threshold, where its score sits
among the validation scores, a severity word, the most anomalous region and its 3x3 location."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from benchmarks.data.images import ImageDecodeError, load_image, load_mask
from benchmarks.plugins.contract import Baseline
from benchmarks.plugins.location_grid import grid_location
from benchmarks.results.models import SavedModel

SEVERITY_WORDS = ("slight", "moderate", "severe")
REGION_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
"""The region box covers the connected area around the map's peak above the first of these shares
of the map's range at which that area is at most `REGION_MAX_SHARE` of the image (else the last)."""
REGION_MAX_SHARE = 1 / 9
BATCH = 8


@dataclass(frozen=True)
class InspectedImage:
    """An image to read: its name, where it came from, and (for a labelled split) its truth."""

    name: str
    path: Path | None
    label: int | None = None
    mask_path: Path | None = None
    defect: str | None = None


@dataclass(frozen=True)
class Reading:
    """What the model says about one image. `error` is set (and the rest None) when it could not be read.

    `normal_share` / `anomaly_share`: the fraction of validation normals / anomalies scoring below
    this image. `severity`: None below the threshold; above it "slight" / "moderate" / "severe" by
    where the score falls among the validation anomalies (thirds); "anomalous" without validation
    anomalies. `region` is `(x0, y0, x1, y1)` in image pixels; `location` its 3x3 word.
    """

    image: InspectedImage
    error: str | None = None
    score: float | None = None
    anomalous: bool | None = None
    normal_share: float | None = None
    anomaly_share: float | None = None
    severity: str | None = None
    location: str | None = None
    region: tuple[int, int, int, int] | None = None
    size: tuple[int, int] | None = None
    anomaly_map: np.ndarray | None = field(default=None, repr=False)
    pixels: np.ndarray | None = field(default=None, repr=False)
    truth: np.ndarray | None = field(default=None, repr=False)


def read_images(plugin: Baseline, stamp: SavedModel, images: Sequence[InspectedImage]) -> list[Reading]:
    """Every image read by `plugin`; an image that cannot be decoded or scored gets a reading with its error."""
    decoded: list[tuple[InspectedImage, np.ndarray, np.ndarray | None]] = []
    readings: dict[int, Reading] = {}
    for i, item in enumerate(images):
        try:
            if item.path is None:
                raise ImageDecodeError("no file")
            pixels = load_image(item.path)
            truth = load_mask(item.mask_path, pixels.shape[:2]) if item.mask_path is not None else None
        except (ImageDecodeError, OSError, ValueError) as err:
            readings[i] = Reading(item, error=str(err))
            continue
        decoded.append((item, pixels, truth))
    order = [i for i in range(len(images)) if i not in readings]
    for start in range(0, len(decoded), BATCH):
        chunk = decoded[start : start + BATCH]
        positions = order[start : start + BATCH]
        try:
            prediction = plugin.predict([pixels for _, pixels, _ in chunk])
            prediction.check(len(chunk))
        except Exception as err:  # one bad batch: each of its images gets the reason, the page still renders
            for position, (item, _, _) in zip(positions, chunk, strict=True):
                readings[position] = Reading(item, error=f"{type(err).__name__}: {err}")
            continue
        maps = prediction.maps if prediction.maps is not None else [None] * len(chunk)
        for position, (item, pixels, truth), score, anomaly_map in zip(
            positions, chunk, prediction.scores, maps, strict=True
        ):
            readings[position] = _reading(item, pixels, truth, float(score), anomaly_map, stamp)
    return [readings[i] for i in range(len(images))]


def _reading(item: InspectedImage, pixels: np.ndarray, truth: np.ndarray | None, score: float,
             anomaly_map: np.ndarray | None, stamp: SavedModel) -> Reading:
    normals, anomalies = np.asarray(stamp.val_normal_scores), np.asarray(stamp.val_anomaly_scores)
    anomalous = None if stamp.threshold is None else score >= stamp.threshold
    region = location = None
    if anomaly_map is not None:
        region = peak_region(np.asarray(anomaly_map, dtype=np.float32), pixels.shape[:2])
        location = grid_location(np.asarray(anomaly_map))
    return Reading(
        image=item, score=score, anomalous=anomalous,
        normal_share=float(np.mean(normals < score)) if normals.size else None,
        anomaly_share=float(np.mean(anomalies < score)) if anomalies.size else None,
        severity=severity(score, anomalous, anomalies), location=location, region=region,
        size=(int(pixels.shape[1]), int(pixels.shape[0])),
        anomaly_map=None if anomaly_map is None else np.asarray(anomaly_map, dtype=np.float32),
        pixels=pixels, truth=truth,
    )


def severity(score: float, anomalous: bool | None, val_anomalies: np.ndarray) -> str | None:
    """None when not flagged; else the third of the validation anomaly scores the score falls in."""
    if not anomalous:
        return None
    if val_anomalies.size == 0:
        return "anomalous"
    share = float(np.mean(val_anomalies < score))
    return SEVERITY_WORDS[min(2, int(share * 3))]


def peak_region(anomaly_map: np.ndarray, image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """Box `(x0, y0, x1, y1)` in image pixels around the connected area of the map's peak (see
    `REGION_LEVELS`; the map spans the whole image, whatever its own resolution)."""
    low, high = float(anomaly_map.min()), float(anomaly_map.max())
    peak = np.unravel_index(int(np.argmax(anomaly_map)), anomaly_map.shape)
    area = np.ones_like(anomaly_map, bool)
    for level in REGION_LEVELS if high > low else ():
        labels, _ = ndimage.label(anomaly_map >= low + level * (high - low))
        area = labels == labels[peak]
        if area.mean() <= REGION_MAX_SHARE:
            break
    ys, xs = np.nonzero(area)
    mh, mw = anomaly_map.shape
    h, w = image_hw
    return (int(xs.min() * w / mw), int(ys.min() * h / mh), int(np.ceil((xs.max() + 1) * w / mw)),
            int(np.ceil((ys.max() + 1) * h / mh)))
