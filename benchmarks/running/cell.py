"""Executing one cell: select data by protocol, fit, score val and test, metrics, latency.

Runs inside the cell's own process (see `runner`), so a crash, hang or memory blow-up of a
plugin takes down only this cell, and the peak RSS measured here belongs to this cell alone.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import safetensors.torch
import torch
from tqdm import tqdm

from benchmarks import metrics
from benchmarks.data.cache import cache_root
from benchmarks.data.images import ImageDecodeError, image_size, load_image, load_mask
from benchmarks.data.loaders import load_dataset
from benchmarks.data.schema import Dataset, ImageRecord
from benchmarks.plugins.contract import (
    Baseline,
    MapPooling,
    MethodContext,
    Prediction,
    Protocol,
    Sample,
    SavingUnsupported,
    VariantSpec,
)
from benchmarks.plugins.feature_cache import FeatureCache
from benchmarks.plugins.location_grid import grid_location_of_mask
from benchmarks.plugins.registry import BASELINES, load_plugins
from benchmarks.plugins.weights import WeightsResolver
from benchmarks.results.record import (
    AnswerMetrics,
    CellCounts,
    CellLatency,
    CellMetrics,
    CellTiming,
    HardNegativeRate,
    RoiScoring,
    StratumMetrics,
)
from benchmarks.results.store import CellMaps
from benchmarks.running import compute, latency
from benchmarks.running.config import CellSpec, RunConfig
from benchmarks.running.roi_scoring import RoiPooler, compare, not_applicable

log = logging.getLogger(__name__)

PREDICT_BATCH = 8
MAP_STORE_SIZE = 64
BREAKDOWN_COLUMNS = ("year", "group", "defect", "source")


class CellSkipped(Exception):
    """The cell cannot apply (e.g. not enough normal shots); recorded with status `skipped`."""


@dataclass(frozen=True)
class CellOutcome:
    """What the cell process hands back to the runner: the record's parts and the per-image outputs.

    The cell writes nothing to the run folder; the runner (the one writer) stores `scores` and
    `maps` beside the line it appends.
    """

    status: str
    error: str | None
    weights: str
    weights_detail: tuple[dict[str, object], ...]
    metrics: CellMetrics | None = None
    latency: CellLatency | None = None
    breakdowns: dict[str, dict[str, StratumMetrics]] | None = None
    hard_negative: HardNegativeRate | None = None
    text_metrics: AnswerMetrics | None = None
    counts: CellCounts | None = None
    timing: CellTiming | None = None
    roi: RoiScoring | None = None
    dataset_root: str | None = None
    provenance: dict[str, Any] | None = None
    scores: pd.DataFrame | None = None
    maps: CellMaps | None = None
    fitted: FittedModel | None = None
    model_note: str | None = None
    gemm_path: dict[str, str] | None = None
    """`compute.GemmPathChoice.to_json()`: the path the cell's backbones ran on; goes into its hardware record."""


@dataclass(frozen=True)
class FittedModel:
    """A fitted method's state and what the runner stores beside it (`run --save-models`).

    The tensors travel as safetensors bytes: torch tensors sent through a pipe are shared by file
    descriptor, which dies with the cell process."""

    tensors: bytes
    info: dict[str, Any]
    val_normal_scores: tuple[float, ...]
    val_anomaly_scores: tuple[float, ...]
    class_name: str
    description: str
    roi_pooling: dict[str, Any] | None = None
    """The `MapPooling` (kind, fraction) when the cell's scores are ROI-guided (`SavedModel.roi_pooling`)."""


class StageClock:
    """Seconds per named stage of a cell (`with clock("data"):` or `clock.add("fitting", s)`); see `CellTiming`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def timing(self, predict_floor_s: float | None) -> CellTiming:
        return CellTiming(**{f"{k}_s": v for k, v in self.seconds.items()}, predict_floor_s=predict_floor_s)


def resolve_method(name: str, module: str | None = None) -> type[Baseline]:
    """Find a method class in this process: built-ins, entry points, then the module it came from."""
    load_plugins()
    if name not in BASELINES and module:
        importlib.import_module(module)
    return BASELINES.get(name)


def training_pool(records: Sequence[ImageRecord], protocol: Protocol, sources: Sequence[str]) -> list[ImageRecord]:
    """The train rows a protocol draws from: its allowed sources; for few- and full-shot the normals
    (hard negatives only where there are no other normals)."""
    pool = [r for r in records if r.split == "train" and r.source in sources]
    if protocol in (Protocol.FEW_SHOT, Protocol.FULL_SHOT):
        pool = [r for r in pool if r.label == 0 and not r.hard_negative] or [r for r in pool if r.label == 0]
    return pool


def select_train(
    records: Sequence[ImageRecord], spec: VariantSpec, seed: int, cap: int | None
) -> list[ImageRecord]:
    """The training rows a variant may see (its protocol and allowed sources), seeded and capped."""
    if spec.protocol is Protocol.ZERO_SHOT:
        return []
    pool = training_pool(records, spec.protocol, spec.sources)
    rng = np.random.default_rng(seed)
    if spec.protocol is Protocol.FEW_SHOT:
        assert spec.shots is not None
        if len(pool) < spec.shots:
            raise CellSkipped(f"{spec.shots}-shot variant but only {len(pool)} normal training images")
        return [pool[i] for i in sorted(rng.choice(len(pool), spec.shots, replace=False))]
    return _cap(pool, cap, rng)


def cap_eval(records: Sequence[ImageRecord], cap: int | None) -> list[ImageRecord]:
    """At most `cap` rows, stratified by label, with a fixed seed so every cell sees the same images."""
    return _cap(list(records), cap, np.random.default_rng(0))


def _cap(records: list[ImageRecord], cap: int | None, rng: np.random.Generator) -> list[ImageRecord]:
    if cap is None or len(records) <= cap:
        return records
    by_label: dict[int, list[int]] = {}
    for i, r in enumerate(records):
        by_label.setdefault(r.label, []).append(i)
    chosen: list[int] = []
    for _, indices in sorted(by_label.items()):
        share = max(1, round(cap * len(indices) / len(records)))
        chosen.extend(rng.choice(indices, size=min(share, len(indices)), replace=False).tolist())
    return [records[i] for i in sorted(chosen)]


def load_samples(records: Sequence[ImageRecord], with_masks: bool) -> list[Sample]:
    """Decode images (and masks); a broken file raises naming its row and path."""
    samples = []
    for record in records:
        try:
            image = load_image(record.image)
            mask = (
                load_mask(record.mask, image.shape[:2]) if (with_masks and record.mask is not None) else None
            )
        except ImageDecodeError as exc:
            raise ImageDecodeError(f"manifest row {record.row} ({record.image_id}): {exc}") from None
        samples.append(Sample(record=record, image=image, mask=mask))
    return samples


def batches_of(samples: Sequence[Sample], size: int = PREDICT_BATCH) -> Iterator[Sequence[Sample]]:
    """Decoded samples in evaluation batches."""
    for start in range(0, len(samples), size):
        yield samples[start : start + size]


def predict_all(plugin: Baseline, batches: Iterable[Sequence[Sample]], total: int, desc: str,
                on_batch: Callable[[Sequence[Sample], Prediction], None] | None = None) -> Prediction:
    """Run `predict` on every batch and concatenate scores, texts, answers and extras; every batch is
    checked against the contract. Maps are not kept: `on_batch` sees each checked batch with its
    whole prediction and keeps what it needs of them (`EvaluationStream`)."""
    scores, texts = [], []
    decisions: list[bool | None] = []
    locations: list[str | None] = []
    extra: dict[str, list[object]] = {}
    has_maps = has_texts = has_answers = None
    with tqdm(total=total, desc=desc, unit="img", leave=False) as bar:
        for chunk in batches:
            pred = plugin.predict([s.image for s in chunk])
            try:
                pred.check(len(chunk))
                has_maps = pred.maps is not None if has_maps is None else has_maps
                has_texts = pred.texts is not None if has_texts is None else has_texts
                answers = (pred.decisions is not None, pred.locations is not None)
                has_answers = answers if has_answers is None else has_answers
                if (pred.maps is not None) != has_maps or (pred.texts is not None) != has_texts or answers != has_answers:
                    raise ValueError("maps, texts or answers are present for some batches but not for others")
            except ValueError as exc:
                ids = ", ".join(s.record.image_id for s in chunk[:3])
                raise ValueError(
                    f"{plugin.meta.name} returned a bad prediction for images {ids}...: {exc}"
                ) from None
            if on_batch is not None:
                on_batch(chunk, pred)
            scores.append(np.asarray(pred.scores, dtype=np.float64))
            if pred.texts is not None:
                texts.extend(pred.texts)
            decisions.extend(pred.decisions or [])
            locations.extend(pred.locations or [])
            for name, values in pred.extra.items():
                extra.setdefault(name, []).extend(values)
            bar.update(len(chunk))
    return Prediction(
        scores=np.concatenate(scores) if scores else np.zeros(0),
        texts=texts or None,
        decisions=decisions if has_answers and has_answers[0] else None,
        locations=locations if has_answers and has_answers[1] else None,
        extra=extra,
    )


def _pixels_of(record: ImageRecord) -> int:
    """The image's pixel count from its header; a broken file raises naming its row and path."""
    try:
        height, width = image_size(record.image)
    except Exception as exc:
        raise ImageDecodeError(f"manifest row {record.row} ({record.image_id}): cannot read {record.image}: {exc}"
                               ) from None
    return height * width


class EvaluationStream:
    """What a cell keeps of its test set as it streams through `predict` (`on_batch`): the first
    `keep_images` images (the latency protocol times them), each map at `MAP_STORE_SIZE` (the
    stored maps), the pixel metrics' sample (`metrics.PixelAccumulator`, when the dataset has masks)
    and the 3x3 location of each anomaly's mask (the answers' location accuracy). Memory grows with
    the test set only by the small maps (8 KB an image, float16 as stored)."""

    def __init__(self, records: Sequence[ImageRecord], has_masks: bool, keep_images: int) -> None:
        self.records = list(records)
        self.keep_images = keep_images
        self.decode_s = 0.0
        self.metrics_s = 0.0
        self.images: list[np.ndarray] = []
        self.small_maps: list[np.ndarray] = []
        self.mask_locations: list[str | None] = []
        kept = [r for r in records if r.label == 0 or r.mask is not None]
        self.pixel = metrics.PixelAccumulator(sum(_pixels_of(r) for r in kept)) if has_masks else None
        self.roi: RoiPooler | None = None
        """Set after `fit` where ROI scoring applies: pools each map over the image and inside its ROI."""

    def batches(self) -> Iterator[list[Sample]]:
        """The records decoded (with masks) one evaluation batch at a time; decoding time in `decode_s`."""
        for start in range(0, len(self.records), PREDICT_BATCH):
            begin = time.perf_counter()
            chunk = load_samples(self.records[start : start + PREDICT_BATCH], with_masks=True)
            self.decode_s += time.perf_counter() - begin
            yield chunk

    def __call__(self, chunk: Sequence[Sample], prediction: Prediction) -> None:
        begin = time.perf_counter()
        try:
            self._keep(chunk, prediction)
        finally:
            self.metrics_s += time.perf_counter() - begin

    def _keep(self, chunk: Sequence[Sample], prediction: Prediction) -> None:
        room = self.keep_images - len(self.images)
        self.images.extend(s.image for s in chunk[: max(room, 0)])
        self.mask_locations.extend(grid_location_of_mask(s.mask) if s.label == 1 and s.mask is not None
                                   and s.mask.any() else None for s in chunk)
        if prediction.maps is None:
            return
        if self.roi is not None:
            self.roi.add(prediction.maps, [s.record.roi for s in chunk])
        for sample, anomaly_map in zip(chunk, prediction.maps, strict=True):
            self.small_maps.append(metrics.resize_map(anomaly_map, (MAP_STORE_SIZE, MAP_STORE_SIZE)).astype(np.float16))
            if self.pixel is None or (sample.label == 1 and sample.mask is None):
                continue
            shape = sample.image.shape[:2]
            mask = sample.mask if sample.mask is not None else np.zeros(shape, dtype=bool)
            self.pixel.add(metrics.resize_map(anomaly_map, shape), mask, sample.record.image_id)

    def pixel_metrics(self) -> metrics.PixelMetrics:
        """Pixel AUROC / AUPRO over the test images with ground truth: anomalies with masks, all normals."""
        if self.pixel is None or not self.small_maps:
            return metrics.pixel_metrics([], [])
        return self.pixel.result()


def score_frame(records: Sequence[ImageRecord], prediction: Prediction, root: Path) -> pd.DataFrame:
    """One row per image: its manifest fields (paths relative to the dataset `root`) and its outputs."""
    rows = pd.DataFrame(
        {
            "image_id": [r.image_id for r in records],
            "image": [r.image_id for r in records],
            "row": [r.row for r in records],
            "label": [r.label for r in records],
            "split": [r.split for r in records],
            "source": [r.source for r in records],
            "year": pd.array([r.year for r in records], dtype="Int64"),
            "group": [r.group for r in records],
            "defect": [r.defect for r in records],
            "hard_negative": [r.hard_negative for r in records],
            "score": prediction.scores,
        }
    )
    if prediction.texts is not None:
        rows["text"] = prediction.texts
    if prediction.decisions is not None:
        rows["decision"] = [None if d is None else int(d) for d in prediction.decisions]
    if prediction.locations is not None:
        rows["grid_location"] = prediction.locations
    for name, values in prediction.extra.items():
        rows[name] = [v if isinstance(v, str | int | float | bool) or v is None else str(v) for v in values]
    return rows


def run_cell(config: RunConfig, cell: CellSpec, plugin_module: str | None, run_dir: Path) -> CellOutcome:
    """Execute `cell`; every failure becomes an outcome with status failed/skipped, never an exception."""
    resolver = WeightsResolver(mode=config.weights, weights_dir=config.weights_dir)  # type: ignore[arg-type]
    try:
        return _run_cell(config, cell, plugin_module, run_dir, resolver)
    except CellSkipped as exc:
        return CellOutcome("skipped", str(exc), resolver.effective_mode, tuple(resolver.summary()))
    except (MemoryError, torch.OutOfMemoryError) as exc:
        log.debug("cell %s ran out of memory:\n%s", cell.key, traceback.format_exc())
        return CellOutcome(
            "failed",
            f"out of memory ({type(exc).__name__}: {exc or 'allocation failed'}); "
            "lower the plugin's batch size or the preset's image caps",
            resolver.effective_mode,
            tuple(resolver.summary()),
        )
    except Exception as exc:
        log.debug("cell %s failed:\n%s", cell.key, traceback.format_exc())
        return CellOutcome(
            "failed", f"{type(exc).__name__}: {exc}", resolver.effective_mode, tuple(resolver.summary())
        )


def _run_cell(
    config: RunConfig, cell: CellSpec, plugin_module: str | None, run_dir: Path, resolver: WeightsResolver
) -> CellOutcome:
    clock = StageClock()
    method = resolve_method(cell.method, plugin_module)
    with clock("data"):
        dataset = load_dataset(cell.dataset, scale=config.preset.data_scale)
    spec = method.meta.variants.get(cell.variant)
    if spec is None:
        raise ValueError(f"{cell.method} has no variant {cell.variant!r}")
    if method.meta.needs_masks and not any(r.mask for r in dataset.split("train")):
        raise CellSkipped(f"{cell.method} needs training masks; {dataset.name} has none")
    with clock("setup"):
        gemm = compute.gemm_path(config.device)
    context = MethodContext(
        variant=cell.variant,
        seed=cell.seed,
        device=config.device,
        weights=resolver,
        preset=config.preset,
        class_name=dataset.class_name,
        description=dataset.description,
        work_dir=run_dir / "work" / cell.key,
        options=config.method_options.get(cell.method, {}),
        feature_cache=FeatureCache(cache_root() / "features") if config.feature_cache else None,
        gemm_path=gemm.path,
    )
    with clock("data"):
        train = load_samples(
            select_train(dataset.records, spec, cell.seed, config.preset.max_train_images),
            with_masks=spec.protocol is Protocol.SUPERVISED,
        )
        val = load_samples(cap_eval(dataset.split("val"), config.preset.max_eval_images), with_masks=False)
        test = cap_eval(dataset.split("test"), config.preset.max_eval_images)
        stream = EvaluationStream(test, dataset.has_masks, keep_images=config.preset.latency_images)

    _seed_everything(cell.seed)
    with clock("setup"):
        plugin = method(context)
    fit_s = latency.time_call(lambda: plugin.fit(train, val or None), config.device)
    clock.add("fitting", fit_s)
    pooling = plugin.map_pooling()
    val_roi = RoiPooler(pooling) if dataset.has_roi and pooling is not None and val else None
    stream.roi = RoiPooler(pooling) if val_roi is not None else None

    def pool_val(chunk: Sequence[Sample], prediction: Prediction) -> None:
        if val_roi is not None and prediction.maps is not None:
            val_roi.add(prediction.maps, [s.record.roi for s in chunk])

    with clock("predicting"):
        val_pred = (predict_all(plugin, batches_of(val), len(val), "val", on_batch=pool_val) if val
                    else Prediction(scores=np.zeros(0)))
    start = time.perf_counter()
    test_pred = predict_all(plugin, stream.batches(), len(test), "test", on_batch=stream)
    predict_s = time.perf_counter() - start - stream.decode_s - stream.metrics_s
    clock.add("predicting", predict_s)
    clock.add("data", stream.decode_s)
    metrics_start = time.perf_counter()

    labels = np.array([r.label for r in test], dtype=int)
    own_scores = {"val": val_pred.scores, "test": test_pred.scores}
    roi = _roi_scoring(config, dataset, pooling, val_roi, stream.roi, val_pred, test_pred, val, labels, cell.seed)
    if roi is not None and roi.used and val_roi is not None and stream.roi is not None:
        val_pred = replace(val_pred, scores=np.asarray(val_roi.inside))
        test_pred = replace(test_pred, scores=np.asarray(stream.roi.inside))
    threshold = metrics.choose_threshold(val_pred.scores, np.array([s.label for s in val], dtype=int))
    image = metrics.image_metrics(
        test_pred.scores, labels, threshold, n_bootstrap=config.preset.bootstrap_samples, seed=cell.seed
    )
    pixel = stream.pixel_metrics()
    val_labels = np.array([s.label for s in val], dtype=int)
    val_auroc = metrics.auroc_or_none(val_pred.scores, val_labels, what="val") if val else None
    frame = pd.concat([score_frame([s.record for s in val], val_pred, dataset.root),
                       score_frame(test, test_pred, dataset.root)], ignore_index=True)
    if roi is not None and roi.roi_auroc is not None and val_roi is not None and stream.roi is not None:
        frame["score_own"] = np.concatenate([own_scores["val"], own_scores["test"]])
        frame["score_map"] = np.concatenate([val_roi.whole, stream.roi.whole])
        frame["score_roi"] = np.concatenate([val_roi.inside, stream.roi.inside])
    breakdowns = {col: metrics.breakdown(frame, col, threshold.value) for col in BREAKDOWN_COLUMNS}
    hard = metrics.hard_negative_fpr(frame, threshold.value)

    clock.add("metrics", time.perf_counter() - metrics_start + stream.metrics_s)  # with the stream's pixel work

    timed = stream.images
    # latency always times the whole pipeline: the feature cache would serve these very images
    with context.feature_cache.disabled() if context.feature_cache else contextlib.nullcontext():
        with clock("latency_runs"):
            batch1 = latency.batch1_latency(plugin.predict, timed, config.device, config.preset.latency_warmup)
            throughput = latency.best_throughput(
                plugin.predict, timed, config.device, config.preset.throughput_batch_sizes
            )
        with clock("flop_count"):
            stats = _with_compute(latency.summarise(config.device, batch1, throughput, fit_s, predict_s), plugin,
                                  timed, config.device)

    with clock("saving"):
        fitted, model_note = (_fitted_model(plugin, val_pred.scores, val_labels, dataset) if config.save_models
                              else (None, None))
        if fitted is not None and roi is not None and roi.used and pooling is not None:
            fitted = replace(fitted, roi_pooling={"kind": pooling.kind, "fraction": pooling.fraction})
        maps = (CellMaps(tuple(r.image_id for r in test), np.stack(stream.small_maps))
                if stream.small_maps else None)
    floor = (stats.gflop_per_image * (len(val) + len(test)) / stats.gemm_peak_gflops
             if stats.gflop_per_image and stats.gemm_peak_gflops else None)
    return CellOutcome(
        status="ok",
        error=None,
        weights=resolver.effective_mode,
        weights_detail=tuple(resolver.summary()),
        metrics=metrics.cell_metrics(image, pixel, val_auroc),
        latency=stats,
        breakdowns=breakdowns,
        hard_negative=hard,
        text_metrics=_text_metrics(labels, stream.mask_locations, test_pred),
        counts=CellCounts(n_train=len(train), n_val=len(val), n_test=len(test)),
        timing=clock.timing(predict_floor_s=floor),
        roi=roi,
        dataset_root=str(dataset.root),
        provenance=dict(plugin.provenance()),
        scores=frame,
        maps=maps,
        fitted=fitted,
        model_note=model_note,
        gemm_path=gemm.to_json(),
    )


def _roi_scoring(config: RunConfig, dataset: Dataset, pooling: MapPooling | None, val_roi: RoiPooler | None,
                 test_roi: RoiPooler | None, val_pred: Prediction, test_pred: Prediction, val: Sequence[Sample],
                 test_labels: np.ndarray, seed: int) -> RoiScoring | None:
    """The cell's ROI record: None for a dataset without regions of interest; else what applies."""
    if not dataset.has_roi:
        return None
    if pooling is None:
        return not_applicable(config.roi, "the image score is not a pooling of the map: the method's own score")
    if not val:
        return not_applicable(config.roi, "no validation images to choose on: the method's own score")
    if val_roi is None or test_roi is None or len(val_roi.inside) != len(val) or len(test_roi.inside) != len(test_labels):
        return not_applicable(config.roi, "the method returned no anomaly maps: its own score")
    return compare(config.roi, pooling, val_roi, test_roi, val_pred.scores,
                   np.array([s.label for s in val], dtype=int), test_pred.scores, test_labels,
                   config.preset.bootstrap_samples, seed)


def _fitted_model(
    plugin: Baseline, val_scores: np.ndarray, val_labels: np.ndarray, dataset: Dataset
) -> tuple[FittedModel | None, str | None]:
    """The plugin's fitted state for saving, or why there is none (saving never fails the cell)."""
    try:
        state = plugin.fitted_state()
        tensors = safetensors.torch.save({k: v.detach().cpu().contiguous() for k, v in state.tensors.items()})
        json.dumps(dict(state.info), allow_nan=False)  # the stamp must be plain JSON
    except SavingUnsupported as exc:
        return None, str(exc)
    except Exception as exc:  # a broken saver loses the model, not the cell's numbers
        log.warning("%s: saving the fitted state failed: %s", plugin.meta.name, exc)
        return None, f"saving failed: {type(exc).__name__}: {str(exc)[:300]}"
    scores = np.asarray(val_scores, dtype=float)
    return FittedModel(
        tensors=tensors,
        info=dict(state.info),
        val_normal_scores=tuple(float(v) for v in scores[val_labels == 0]),
        val_anomaly_scores=tuple(float(v) for v in scores[val_labels == 1]),
        class_name=dataset.class_name,
        description=dataset.description,
    ), None


def _with_compute(stats: CellLatency, plugin: Baseline, timed: Sequence[np.ndarray], device: str) -> CellLatency:
    """The latency record with the prediction's FLOPs, the rate they ran at and its share of the
    machine's GEMM peak (None where torch counts no FLOPs or the counter fails)."""
    if not timed or stats.batch1_p50_ms is None:
        return stats
    try:
        gflop = compute.flops_per_image(plugin.predict, timed[0]) / 1e9
        peak = compute.machine_gemm_peak(device).gflops
    except Exception as exc:  # the FLOP figure is a bonus: never fail a cell for it
        log.warning("%s: FLOP counting failed: %s", plugin.meta.name, exc)
        return stats
    achieved = gflop / (stats.batch1_p50_ms / 1000) if gflop > 0 else None
    return replace(stats, gflop_per_image=gflop, achieved_gflops=achieved, gemm_peak_gflops=peak,
                   gemm_efficiency=achieved / peak if achieved and peak else None)


def _text_metrics(
    labels: np.ndarray, mask_locations: Sequence[str | None], prediction: Prediction
) -> AnswerMetrics | None:
    """For methods that answer: decision F1 from the yes/no answers and 3x3 location accuracy against
    the masks' locations (`EvaluationStream.mask_locations`: None for normals and unmasked anomalies)."""
    decisions = prediction.decisions
    if decisions is None:
        return None
    valid = np.array([d is not None for d in decisions])
    predicted = np.array([int(bool(d)) for d in decisions])
    tp = int(((predicted == 1) & (labels == 1) & valid).sum())
    fp = int(((predicted == 1) & (labels == 0) & valid).sum())
    fn = int(((predicted == 0) & (labels == 1) & valid).sum())
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else None
    locations = prediction.locations or []
    hits = [
        loc == truth
        for truth, loc, ok in zip(mask_locations, locations, valid, strict=False)
        if ok and truth is not None
    ]
    return AnswerMetrics(
        decision_f1=f1,
        decision_accuracy=float(((predicted == labels) & valid).sum() / max(valid.sum(), 1)),
        n_failed_answers=int((~valid).sum()),
        location_accuracy=float(np.mean(hits)) if hits else None,
        n_located=len(hits),
    )


def _seed_everything(seed: int) -> None:
    import random

    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
