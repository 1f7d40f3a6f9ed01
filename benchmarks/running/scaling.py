"""`python -m benchmarks bench scaling`: how each method's cost grows with the work.

For every method (its default variants) and, beside a method that declares one, the library's own
version of it (`MethodMeta.library_twin`: PatchCore's is anomalib's `Patchcore`), each point is
measured in a fresh process forked from a warmed fork server (so its peak memory is its own):
- training-set axis: `fit` on n training images (the variant's protocol picks them from the
  embedded set; beyond what the set holds, the same images come back flipped and shifted, one
  deterministic change per repeat), for n in `train_sizes`. Zero- and few-shot variants fit on what
  their protocol gives whatever n is: they get one point;
- resolution axis: the method's declared input-side options (`MethodMeta.resolution_options`) set
  to each side in `sides`, fitted on a fixed number of training images; methods whose input size
  the backbone fixes have no resolution curve.
Each point records fit seconds, the median batch-1 predict time per image (over `predict_images`
test images, after one warm-up call, the feature cache off: the latency protocol's timing), the
predict time per image of the same images in one batch of `PREDICT_BATCH` (the batch a cell's
val/test evaluation uses, with the feature cache on: what a first run's evaluation pays) and the
same batch again (its features now cached: what a later cell of the method pays), the
plugin's construction time, the image decode time, peak resident memory and its growth during
the point, the feature-cache bytes the point wrote, and the memory bank: the fitted state's
tensors (`Baseline.fitted_state`) that are not parameters of a module the plugin holds. Every quantity gets a
power law `a * size ** b` fitted in log-log space (`fit_power_law`): the exponent b says how it grows.

Per-point time is capped (`point_timeout_s`): a point that runs over is recorded as such and the
larger sizes of that curve are skipped (the curve's fit says where it would go).
Every point gets its own empty feature cache (as a run's cells share one, switched on for `fit` and
evaluation and off for the latency timing), so every point computes and writes what a first run
computes and writes; a run that finds its features cached is faster than its forecast. The cache
folder of the whole bench is a fresh one too (a method's own disk cache, such as LTFM's trained
base, fills during the bench exactly as during a run: the first variant that needs it pays for it).
Points are measured at one preset (`--preset`, recorded in every point and in the settings):
methods whose training work follows the preset (`MethodMeta.preset_schedule`) need curves of the
preset a run uses.
"""

from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.data.schema import ImageRecord
from benchmarks.plugins.contract import Protocol, SavingUnsupported
from benchmarks.running.cell import PREDICT_BATCH

log = logging.getLogger(__name__)

TRAIN_SIZES = (25, 50, 100, 200, 400, 800, 1600)
SIDES = (128, 256, 512)
RESOLUTION_TRAIN_IMAGES = 25
PREDICT_IMAGES = 8
POINT_TIMEOUT_S = 600.0
DATASET = "smartphone-synth"
PAIR_LABEL = "same work"
"""Label suffix of a method and its library twin (`MethodMeta.library_twin`) measured side by side."""


@dataclass(frozen=True)
class PointSpec:
    """One measurement: `method`/`variant` fitted on `train` (records with their augmentation index)."""

    method: str
    variant: str
    axis: str  # "train" | "resolution"
    size: int
    options: Mapping[str, Any]
    weights: str
    train: tuple[tuple[ImageRecord, int], ...]
    val: tuple[ImageRecord, ...]
    predict: tuple[ImageRecord, ...]
    class_name: str
    preset: str = "default"
    seed: int = 0
    label: str = ""
    """Curve name in tables and figures: `method/variant`, plus `PAIR_LABEL` for the anomalib pair."""
    module: str | None = None
    """The module that registers the method (imported in the point's process, as a cell's is)."""


@dataclass(frozen=True)
class ScalingPoint:
    """What one point measured (seconds, milliseconds, megabytes); None where it did not get there."""

    label: str
    method: str
    variant: str
    axis: str
    size: int
    n_train: int
    status: str  # ok | failed | timeout | skipped
    error: str | None = None
    weights: str | None = None
    setup_s: float | None = None
    fit_s: float | None = None
    predict_ms: float | None = None
    predict_batch_ms: float | None = None
    predict_cached_ms: float | None = None
    """The batch-8 pass again, its features now in the cache: what a later cell of the method pays."""
    decode_ms: float | None = None
    peak_rss_mb: float | None = None
    base_rss_mb: float | None = None
    state_mb: float | None = None
    cache_mb: float | None = None
    preset: str = "default"

    @property
    def rss_growth_mb(self) -> float | None:
        if self.peak_rss_mb is None or self.base_rss_mb is None:
            return None
        return max(self.peak_rss_mb - self.base_rss_mb, 0.0)


QUANTITIES: dict[str, str] = {
    "fit_s": "fit time (s)",
    "predict_ms": "predict time per image, batch 1 (ms)",
    "predict_batch_ms": f"predict time per image, batch {PREDICT_BATCH} (ms)",
    "predict_cached_ms": f"predict time per image, batch {PREDICT_BATCH}, features cached (ms)",
    "rss_growth_mb": "peak memory growth during the point (MB)",
    "state_mb": "memory bank: fitted tensors that are not module parameters (MB)",
    "cache_mb": "feature cache written to disk (MB)",
}


@dataclass(frozen=True)
class PowerLaw:
    """`value = coefficient * size ** exponent`, least squares in log-log over `points` sizes."""

    exponent: float
    coefficient: float
    points: int
    r2: float | None

    def at(self, size: float) -> float:
        return self.coefficient * size ** self.exponent


def fit_power_law(sizes: Sequence[float], values: Sequence[float]) -> PowerLaw | None:
    """The power law through (size, value) pairs with both positive; None with fewer than 2."""
    pairs = [(s, v) for s, v in zip(sizes, values, strict=True) if s > 0 and v is not None and v > 0]
    if len({s for s, _ in pairs}) < 2:
        return None
    x = np.log([s for s, _ in pairs])
    y = np.log([v for _, v in pairs])
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1 - float((residual ** 2).sum()) / total if total > 0 else None
    return PowerLaw(float(slope), float(math.exp(intercept)), len(pairs), r2)


@dataclass
class ScalingResult:
    """Every point of one bench, with where it ran; `laws[label][axis][quantity]`."""

    points: list[ScalingPoint]
    hardware: dict[str, Any]
    settings: dict[str, Any]
    laws: dict[str, dict[str, dict[str, PowerLaw | None]]] = field(default_factory=dict)

    def curve(self, label: str, axis: str) -> list[ScalingPoint]:
        return sorted((p for p in self.points if p.label == label and p.axis == axis and p.status == "ok"),
                      key=lambda p: p.size)

    def fit_laws(self) -> None:
        labels = sorted({p.label for p in self.points})
        self.laws = {label: {axis: {q: fit_power_law([p.size for p in self.curve(label, axis)],
                                                     [getattr(p, q) for p in self.curve(label, axis)])
                                    for q in QUANTITIES}
                             for axis in ("train", "resolution")} for label in labels}

    def to_json(self) -> dict[str, Any]:
        return {"hardware": self.hardware, "settings": self.settings,
                "points": [{**asdict(p), "rss_growth_mb": p.rss_growth_mb} for p in self.points],
                "laws": {label: {axis: {q: asdict(law) if law else None for q, law in quantities.items()}
                                 for axis, quantities in axes.items()} for label, axes in self.laws.items()}}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ScalingResult:
        fields_ = set(ScalingPoint.__dataclass_fields__)
        points = [ScalingPoint(**{k: v for k, v in p.items() if k in fields_}) for p in obj["points"]]
        result = cls(points, dict(obj.get("hardware", {})), dict(obj.get("settings", {})))
        result.fit_laws()
        return result


def load_scaling(path: str | Path) -> ScalingResult:
    path = Path(path)
    if path.is_dir():
        path = path / "scaling.json"
    return ScalingResult.from_json(json.loads(path.read_text(encoding="utf-8")))


# --- the measurement, in a child process ------------------------------------------------------------

def augmented(image: np.ndarray, k: int) -> np.ndarray:
    """Repeat `k` of a training image: k = 0 the image, else flipped (odd k) and rolled by 3k px."""
    if k == 0:
        return image
    out = image[:, ::-1] if k % 2 else image
    return np.ascontiguousarray(np.roll(out, 3 * k, axis=1))


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure_point(spec: PointSpec) -> ScalingPoint:
    """Fit and time one point in this process (call it in a fresh child: peak memory is per process)."""
    import torch

    from benchmarks.data.images import load_image
    from benchmarks.plugins.contract import MethodContext
    from benchmarks.plugins.feature_cache import FeatureCache
    from benchmarks.plugins.weights import WeightsResolver
    from benchmarks.running import compute, latency
    from benchmarks.running.cell import load_samples
    from benchmarks.running.presets import get_preset

    method = _method(spec.method, spec.module)
    base = _rss_mb()
    common = {"label": spec.label, "method": spec.method, "variant": spec.variant, "axis": spec.axis,
              "size": spec.size, "n_train": len(spec.train)}
    start = time.perf_counter()
    records = [record for record, _ in spec.train]
    samples = load_samples(records, with_masks=method.meta.variants[spec.variant].protocol is Protocol.SUPERVISED)
    train = [replace(s, image=augmented(s.image, k), mask=None if s.mask is None else augmented(s.mask, k))
             for s, (_, k) in zip(samples, spec.train, strict=True)]
    val = load_samples(list(spec.val), with_masks=False)
    decode_ms = 1000 * (time.perf_counter() - start) / max(1, len(train) + len(val))
    images = [load_image(r.image) for r in spec.predict]
    resolver = WeightsResolver(spec.weights)
    work_dir = Path(tempfile.mkdtemp(prefix="scaling-"))
    cache = FeatureCache(work_dir / "features")
    context = MethodContext(variant=spec.variant, seed=spec.seed, device="cpu", weights=resolver,
                            preset=get_preset(spec.preset), class_name=spec.class_name, options=dict(spec.options),
                            work_dir=work_dir / "work", feature_cache=cache, gemm_path=compute.gemm_path().path)
    try:
        torch.manual_seed(spec.seed)
        start = time.perf_counter()
        plugin = method(context)
        setup_s = time.perf_counter() - start
        fit_s = latency.time_call(lambda: plugin.fit(train, val or None), "cpu")
        with cache.disabled():  # the latency protocol times the whole pipeline
            plugin.predict(images[:1])  # warm-up
            per_image = [latency.time_call(lambda image=image: plugin.predict([image]), "cpu") for image in images]
        chunks = [images[i : i + PREDICT_BATCH] for i in range(0, len(images), PREDICT_BATCH)]
        batched = [latency.time_call(lambda chunk=chunk: plugin.predict(chunk), "cpu") for chunk in chunks]
        cached = [latency.time_call(lambda chunk=chunk: plugin.predict(chunk), "cpu") for chunk in chunks]
        try:
            frozen = _frozen_tensors(plugin)
            state = plugin.fitted_state()
            state_mb = sum(t.numel() * t.element_size() for t in state.tensors.values()
                           if not any(f.shape == t.shape and f.dtype == t.dtype and torch.equal(f, t)
                                      for f in frozen.get(tuple(t.shape), []))) / 2**20
        except SavingUnsupported:
            state_mb = None
        peak, _ = latency.peak_memory_mb("cpu")
        cache_mb = sum(f.stat().st_size for f in (work_dir / "features").rglob("*") if f.is_file()) / 2**20
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return ScalingPoint(**common, status="ok", weights=resolver.effective_mode, setup_s=setup_s, fit_s=fit_s,
                        predict_ms=1000 * statistics.median(per_image),
                        predict_batch_ms=1000 * sum(batched) / len(images),
                        predict_cached_ms=1000 * sum(cached) / len(images), decode_ms=decode_ms,
                        peak_rss_mb=peak, base_rss_mb=base, state_mb=state_mb, cache_mb=cache_mb,
                        preset=spec.preset)


def _method(name: str, module: str | None) -> Any:
    """The method class, from its module when importing that registers it (the fork server has
    imported it already), else through every installed plugin as a cell finds it."""
    import importlib

    from benchmarks.plugins.registry import BASELINES
    from benchmarks.running.cell import resolve_method

    if module:
        importlib.import_module(module)
    return BASELINES.get(name) if name in BASELINES else resolve_method(name, module)


def _frozen_tensors(plugin: object) -> dict[tuple[int, ...], list[Any]]:
    """Parameters of every module the plugin holds, by shape: the memory bank is the fitted state
    without them (a saved state also carries a random backbone and trained heads, whose size does
    not grow with the data; a bank kept as a module buffer still counts)."""
    import torch

    found: dict[tuple[int, ...], list[Any]] = {}
    seen: set[int] = set()

    def visit(obj: object, depth: int) -> None:
        if id(obj) in seen or depth > 3:
            return
        seen.add(id(obj))
        if isinstance(obj, torch.nn.Module):
            for module in obj.modules():
                for t in module.parameters(recurse=False):
                    found.setdefault(tuple(t.shape), []).append(t.detach())
            return
        if isinstance(obj, (list, tuple)):
            children: list[object] = list(obj)
        elif isinstance(obj, dict):
            children = list(obj.values())
        elif hasattr(obj, "__dict__") and not isinstance(obj, type):
            children = list(vars(obj).values())
        else:
            return
        for child in children:
            visit(child, depth + 1)

    visit(plugin, 0)
    return found


def _child(spec: PointSpec, conn: Any) -> None:
    try:
        point = measure_point(spec)
    except Exception as exc:  # a failing method fails its point, never the bench
        point = ScalingPoint(spec.label, spec.method, spec.variant, spec.axis, spec.size, len(spec.train), "failed",
                             f"{type(exc).__name__}: {exc}", preset=spec.preset)
    conn.send(point)
    conn.close()


def run_point(spec: PointSpec, context: Any, timeout_s: float | None) -> ScalingPoint:
    """`measure_point` in a child of `context`, stopped after `timeout_s`."""
    parent, child = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(spec, child), name=f"scaling-{spec.label}-{spec.size}")
    process.start()
    child.close()
    ready = parent.poll(timeout=timeout_s)
    point = parent.recv() if ready else None
    if point is None:
        process.kill()
    process.join()
    if point is None:
        reason = (f"over the point timeout of {timeout_s:.0f} s" if not ready
                  else f"the point's process died (exit code {process.exitcode})")
        return ScalingPoint(spec.label, spec.method, spec.variant, spec.axis, spec.size, len(spec.train),
                            "timeout" if not ready else "failed", reason, preset=spec.preset)
    return point


# --- the plan -----------------------------------------------------------------------------------------

def training_rows(records: Sequence[ImageRecord], protocol: Protocol, sources: Sequence[str], shots: int | None,
                  n: int, seed: int) -> tuple[tuple[ImageRecord, int], ...]:
    """n training rows for a curve point: the protocol's pool, shuffled once by `seed`, repeated with
    an augmentation index beyond its size (zero-shot: none; few-shot: its k normals, whatever n)."""
    from benchmarks.running.cell import training_pool

    pool = training_pool(records, protocol, sources)
    if protocol is Protocol.ZERO_SHOT or not pool:
        return ()
    order = np.random.default_rng(seed).permutation(len(pool))
    count = shots if protocol is Protocol.FEW_SHOT and shots is not None else n
    return tuple((pool[order[i % len(pool)]], i // len(pool)) for i in range(count))


def grows_with_training(protocol: Protocol) -> bool:
    return protocol in (Protocol.FULL_SHOT, Protocol.SUPERVISED)


def plan_points(methods: Sequence[str], weights: str, train_sizes: Sequence[int], sides: Sequence[int],
                with_twins: bool, dataset_name: str = DATASET, seed: int = 0, preset: str = "default") -> list[PointSpec]:
    """Every point of the bench, in measurement order (a curve's sizes ascending)."""
    from benchmarks.data.loaders import load_dataset
    from benchmarks.plugins.registry import BASELINES
    from benchmarks.running.cell import cap_eval

    dataset = load_dataset(dataset_name)
    val = tuple(cap_eval(dataset.split("val"), 20))
    predict = tuple(cap_eval(dataset.split("test"), PREDICT_IMAGES))
    specs: list[PointSpec] = []

    def add(method: str, variant: str, axis: str, size: int, n: int, options: Mapping[str, Any], mode: str,
            label: str) -> None:
        spec = BASELINES.get(method).meta.variants[variant]
        rows = training_rows(dataset.records, spec.protocol, spec.sources, spec.shots, n, seed)
        specs.append(PointSpec(method, variant, axis, size, dict(options), mode, rows, val, predict,
                               dataset.class_name, preset=preset, seed=seed, label=label,
                               module=BASELINES.get(method).__module__))

    for method in methods:
        meta = BASELINES.get(method).meta
        for variant in meta.default_variants:
            protocol = meta.variants[variant].protocol
            label = f"{method}/{variant}"
            for n in (train_sizes if grows_with_training(protocol) else train_sizes[:1]):
                add(method, variant, "train", n, n, {}, weights, label)
        if meta.resolution_options:
            variant = meta.default_variants[-1]
            for side in sides:
                options = {name: int(round(side * factor)) for name, factor in meta.resolution_options.items()}
                add(method, variant, "resolution", side, RESOLUTION_TRAIN_IMAGES, options, weights,
                    f"{method}/{variant}")
    if with_twins:
        for method in methods:
            twin = BASELINES.get(method).meta.library_twin
            if twin is None:
                continue
            for name, options in ((method, twin.own_options), (twin.method, twin.options)):
                variant = BASELINES.get(name).meta.default_variants[0]
                for n in train_sizes:
                    add(name, variant, "train", n, n, options, twin.weights, f"{name} ({PAIR_LABEL})")
    return specs


def twin_pairs(methods: Sequence[str]) -> list[tuple[str, str]]:
    """(our curve label, the twin's curve label) for every method of `methods` that declares a twin."""
    from benchmarks.plugins.registry import BASELINES

    return [(f"{m} ({PAIR_LABEL})", f"{twin.method} ({PAIR_LABEL})") for m in methods
            if (twin := BASELINES.get(m).meta.library_twin) is not None]


def run_scaling(specs: Sequence[PointSpec], out: Path, timeout_s: float | None = POINT_TIMEOUT_S,
                on_point: Callable[[ScalingPoint], None] | None = None,
                pairs: Sequence[tuple[str, str]] = ()) -> ScalingResult:
    """Measure `specs` one after another (nothing else should run: these are timings), write
    `out/scaling.json` after every point (a stopped bench keeps what it measured) and return it."""
    from benchmarks.data.cache import cache_root
    from benchmarks.plugins.registry import plugin_modules
    from benchmarks.running.environment import hardware

    out.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(prefix="scaling-cache-"))
    known_peak = cache_root() / "gemm-peak.json"
    if known_peak.is_file():  # the machine's GEMM probe is not what is measured here
        shutil.copy(known_peak, fresh / "gemm-peak.json")
    previous = os.environ.get("BENCHMARKS_CACHE")
    os.environ["BENCHMARKS_CACHE"] = str(fresh)
    context = mp.get_context("forkserver")
    measured = {spec.module for spec in specs if spec.module}
    installed = set(plugin_modules())
    # a registered method is found through every installed plugin: import them all once, in the server
    preload = sorted(installed | measured) if measured & installed else sorted(measured)
    context.set_forkserver_preload(["benchmarks.running.scaling", *preload])
    result = ScalingResult([], hardware("cpu"), {
        "point_timeout_s": timeout_s, "predict_images": PREDICT_IMAGES, "dataset": DATASET,
        "resolution_train_images": RESOLUTION_TRAIN_IMAGES, "threads": _threads(), "predict_batch": PREDICT_BATCH,
        "preset": specs[0].preset if specs else "default",
        "pairs": [list(pair) for pair in pairs]})
    stopped: set[tuple[str, str]] = set()
    try:
        for spec in specs:
            if (spec.label, spec.axis) in stopped:
                point = ScalingPoint(spec.label, spec.method, spec.variant, spec.axis, spec.size, len(spec.train),
                                     "skipped", "a smaller size of this curve did not finish", preset=spec.preset)
            else:
                point = run_point(spec, context, timeout_s)
                if point.status != "ok":
                    stopped.add((spec.label, spec.axis))
            result.points.append(point)
            result.fit_laws()
            (out / "scaling.json").write_text(json.dumps(result.to_json(), indent=1))
            if on_point is not None:
                on_point(point)
    finally:
        if previous is None:
            os.environ.pop("BENCHMARKS_CACHE", None)
        else:
            os.environ["BENCHMARKS_CACHE"] = previous
        shutil.rmtree(fresh, ignore_errors=True)
    return result


def _threads() -> int:
    import torch

    return torch.get_num_threads()
