"""Reading one image with a fitted model: verdict at the validation threshold, where its score sits
among the validation scores, a severity word, the most anomalous region inside the image's region of
interest and its 3x3 location, the likely defect kind and the region's size; and how well a page of
readings agrees with the truth where the images are labelled (`page_accuracy`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage

from benchmarks.data.images import ImageDecodeError, load_image, load_mask
from benchmarks.inspection.defect_kinds import KindReferences, mask_box, region_size
from benchmarks.plugins.contract import Baseline, MapPooling
from benchmarks.plugins.location_grid import grid_location
from benchmarks.results.models import SavedModel
from benchmarks.running.roi_scoring import roi_on_map

SEVERITY_WORDS = ("slight", "moderate", "severe")
REGION_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
"""The region box covers the connected area around the map's peak above the first of these shares
of the map's range at which that area's bounding box is at most `REGION_MAX_SHARE` of the image (of
the region of interest, where there is one), else the last: a thin strip along an edge does not
make a box the height of the phone. `REGION_MAX_SHARE` was chosen on the validation split of the
reference run's patchcore cell (30 anomalies; box-hit rate 100 % at 1/9, 1/36 and 1/100, median
size error 85 %, 76 % and 54 %), never on test."""
REGION_MAX_SHARE = 1 / 100
BATCH = 8


@dataclass(frozen=True)
class InspectedImage:
    """An image to read: its name, where it came from, and (for a labelled split) its truth."""

    name: str
    path: Path | None
    label: int | None = None
    mask_path: Path | None = None
    defect: str | None = None
    roi_path: Path | None = None
    mm_per_px: float | None = None
    unit: str | None = None
    """The physical unit (one phone) the image shows, where several images show one unit."""


@dataclass(frozen=True)
class Reading:
    """What the model says about one image. `error` is set (and the rest None) when it could not be read.

    `normal_share` / `anomaly_share`: the fraction of validation normals / anomalies scoring below
    this image. `severity`: None below the threshold; above it "slight" / "moderate" / "severe" by
    where the score falls among the validation anomalies (thirds); "anomalous" without validation
    anomalies. `region` is `(x0, y0, x1, y1)` in image pixels around the map's peak inside the
    region of interest (the whole image without one); `location` its 3x3 word. `kind`: the nearest
    labelled reference region's defect type (`defect_kinds`), `size_px` / `size_mm` the region's
    longer side. `roi_scored`: the score was pooled inside the ROI (the saved cell's protocol).
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
    kind: str | None = None
    kind_similarity: float | None = None
    size_px: int | None = None
    size_mm: float | None = None
    roi_scored: bool = False
    anomaly_map: np.ndarray | None = field(default=None, repr=False)
    pixels: np.ndarray | None = field(default=None, repr=False)
    truth: np.ndarray | None = field(default=None, repr=False)
    roi: np.ndarray | None = field(default=None, repr=False)


def read_images(plugin: Baseline, stamp: SavedModel, images: Sequence[InspectedImage],
                references: KindReferences | None = None) -> list[Reading]:
    """Every image read by `plugin`; an image that cannot be decoded or scored gets a reading with its error."""
    decoded: list[tuple[InspectedImage, np.ndarray, np.ndarray | None, np.ndarray | None]] = []
    readings: dict[int, Reading] = {}
    for i, item in enumerate(images):
        try:
            if item.path is None:
                raise ImageDecodeError("no file")
            pixels = load_image(item.path)
            truth = load_mask(item.mask_path, pixels.shape[:2]) if item.mask_path is not None else None
            roi = load_mask(item.roi_path, pixels.shape[:2]) > 0 if item.roi_path is not None else None
        except (ImageDecodeError, OSError, ValueError) as err:
            readings[i] = Reading(item, error=str(err))
            continue
        decoded.append((item, pixels, truth, roi))
    order = [i for i in range(len(images)) if i not in readings]
    for start in range(0, len(decoded), BATCH):
        chunk = decoded[start : start + BATCH]
        positions = order[start : start + BATCH]
        try:
            prediction = plugin.predict([pixels for _, pixels, _, _ in chunk])
            prediction.check(len(chunk))
        except Exception as err:  # one bad batch: each of its images gets the reason, the page still renders
            for position, (item, _, _, _) in zip(positions, chunk, strict=True):
                readings[position] = Reading(item, error=f"{type(err).__name__}: {err}")
            continue
        maps = prediction.maps if prediction.maps is not None else [None] * len(chunk)
        for position, (item, pixels, truth, roi), score, anomaly_map in zip(
            positions, chunk, prediction.scores, maps, strict=True
        ):
            readings[position] = _reading(item, pixels, truth, roi, float(score), anomaly_map, stamp, references)
    return [readings[i] for i in range(len(images))]


def _reading(item: InspectedImage, pixels: np.ndarray, truth: np.ndarray | None, roi: np.ndarray | None,
             score: float, anomaly_map: np.ndarray | None, stamp: SavedModel,
             references: KindReferences | None) -> Reading:
    normals, anomalies = np.asarray(stamp.val_normal_scores), np.asarray(stamp.val_anomaly_scores)
    region = location = None
    roi_scored = False
    kind = None
    if anomaly_map is not None:
        values = np.asarray(anomaly_map, dtype=np.float32)
        inside = roi_on_map(roi, values.shape) if roi is not None else None
        if inside is not None and not inside.any():
            inside = None  # an ROI smaller than one map cell: the whole map, as the cell scored it
        if stamp.roi_pooling and inside is not None:  # the threshold and scale were chosen on ROI scores
            score = MapPooling(str(stamp.roi_pooling["kind"]), float(stamp.roi_pooling["fraction"])).pool(values[inside])
            roi_scored = True
        region = peak_region(values, pixels.shape[:2], inside)
        location = grid_location(np.where(inside, values, values.min()) if inside is not None else values)
        kind = references.guess(pixels, region, item.name) if references is not None else None
    anomalous = None if stamp.threshold is None else score >= stamp.threshold
    size_px, size_mm = region_size(region, item.mm_per_px) if region is not None else (None, None)
    return Reading(
        image=item, score=score, anomalous=anomalous,
        normal_share=float(np.mean(normals < score)) if normals.size else None,
        anomaly_share=float(np.mean(anomalies < score)) if anomalies.size else None,
        severity=severity(score, anomalous, anomalies), location=location, region=region,
        size=(int(pixels.shape[1]), int(pixels.shape[0])),
        kind=kind.kind if kind else None, kind_similarity=kind.similarity if kind else None,
        size_px=size_px, size_mm=size_mm, roi_scored=roi_scored,
        anomaly_map=None if anomaly_map is None else np.asarray(anomaly_map, dtype=np.float32),
        pixels=pixels, truth=truth, roi=roi,
    )


def severity(score: float, anomalous: bool | None, val_anomalies: np.ndarray) -> str | None:
    """None when not flagged; else the third of the validation anomaly scores the score falls in."""
    if not anomalous:
        return None
    if val_anomalies.size == 0:
        return "anomalous"
    share = float(np.mean(val_anomalies < score))
    return SEVERITY_WORDS[min(2, int(share * 3))]


def peak_region(anomaly_map: np.ndarray, image_hw: tuple[int, int],
                inside: np.ndarray | None = None) -> tuple[int, int, int, int]:
    """Box `(x0, y0, x1, y1)` in image pixels around the connected area of the map's peak (see
    `REGION_LEVELS`; the map spans the whole image, whatever its own resolution). With `inside` (the
    ROI on the map's grid), the peak and its area are looked for inside the ROI only."""
    if inside is not None:
        anomaly_map = np.where(inside, anomaly_map, anomaly_map[inside].min())
    low, high = float(anomaly_map.min()), float(anomaly_map.max())
    peak = np.unravel_index(int(np.argmax(anomaly_map)), anomaly_map.shape)
    area = np.ones_like(anomaly_map, bool) if inside is None else inside.copy()
    for level in REGION_LEVELS if high > low else ():
        labels, _ = ndimage.label((anomaly_map >= low + level * (high - low)) & (True if inside is None else inside))
        area = labels == labels[peak]
        if _box_area(area) <= REGION_MAX_SHARE * (anomaly_map.size if inside is None else max(1, int(inside.sum()))):
            break
    ys, xs = np.nonzero(area)
    mh, mw = anomaly_map.shape
    h, w = image_hw
    return (int(xs.min() * w / mw), int(ys.min() * h / mh), int(np.ceil((xs.max() + 1) * w / mw)),
            int(np.ceil((ys.max() + 1) * h / mh)))


def _box_area(area: np.ndarray) -> int:
    box = mask_box(area)
    return 0 if box is None else (box[2] - box[0]) * (box[3] - box[1])


def box_hits(box: tuple[int, int, int, int], truth: np.ndarray) -> bool:
    """Whether the box holds at least one pixel of the true defect mask."""
    x0, y0, x1, y1 = box
    return bool(truth[max(0, y0):y1, max(0, x0):x1].any())


def page_accuracy(readings: Sequence[Reading]) -> dict[str, float | int | None]:
    """How well the page's boxes, kinds and sizes agree with the truth, over the labelled anomalies
    with a non-empty mask that were read: box-hit rate (the box holds a defect pixel), kind accuracy
    (the guessed kind is the labelled defect type), and size error (the box's longer side against the
    mask's bounding box's, median relative and absolute, in px and where the scale is known mm)."""
    truthful = [r for r in readings if r.error is None and r.image.label == 1 and r.truth is not None
                and r.truth.any() and r.region is not None]
    if not truthful:
        return {"anomalies": 0, "box_hit_rate": None, "kind_accuracy": None, "size_error_rel": None,
                "size_error_px": None, "size_error_mm": None}
    hits = [box_hits(r.region, r.truth) for r in truthful if r.region is not None and r.truth is not None]
    kinds = [r.kind == r.image.defect for r in truthful if r.kind is not None]
    rel_errors, px_errors, mm_errors = [], [], []
    for r in truthful:
        assert r.truth is not None and r.size_px is not None
        true_box = mask_box(r.truth)
        assert true_box is not None
        true_side = max(true_box[2] - true_box[0], true_box[3] - true_box[1])
        px_errors.append(abs(r.size_px - true_side))
        rel_errors.append(abs(r.size_px - true_side) / true_side)
        if r.image.mm_per_px:
            mm_errors.append(abs(r.size_px - true_side) * r.image.mm_per_px)
    return {
        "anomalies": len(truthful),
        "box_hit_rate": float(np.mean(hits)),
        "kind_accuracy": float(np.mean(kinds)) if kinds else None,
        "kinds_guessed": len(kinds),
        "size_error_rel": float(np.median(rel_errors)),
        "size_error_px": float(np.median(px_errors)),
        "size_error_mm": float(np.median(mm_errors)) if mm_errors else None,
    }
