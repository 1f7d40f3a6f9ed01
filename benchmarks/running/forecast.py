"""A run's wall time predicted before it starts, from the curves `bench scaling` measured.

Per cell, with its real counts (the variant's protocol applied to the dataset at the preset's
scale and caps, exactly as the cell will select them):
- fit: the `method/variant` fit-time curve at the cell's number of training images;
- prediction: every image the cell pushes through `predict`, each at the per-image time of the
  batch size it goes in (`predict_images_by_batch`): val and test in the evaluation's batches
  (`PREDICT_BATCH`, feature cache on: the curve's `predict_batch_ms`), the latency protocol's
  warm-up and timed images and the FLOP count's profiled call (counted as 2) at batch 1 (cache
  off: `predict_ms`), and the throughput batches (one warm-up batch each) at their sizes, read
  between batch 1 and `PREDICT_BATCH` in log-log space and held at `PREDICT_BATCH`'s time above it.
  A later cell of a method on a dataset an earlier cell of the grid evaluated finds its val/test
  features in the cache (a method's variants share their backbone features: every built-in's do)
  and pays the curve's `predict_cached_ms` for them, where the curve has it;
- data: the curve's decode time per image times training and evaluation images;
- setup: the plugin's construction time at that point;
- metrics: the stratified bootstrap at the preset's resamples, timed here on the cell's test size;
- `CELL_OVERHEAD_S` per cell (forking the cell process, writing its files), an estimate.
Curves are read in log-log space: between measured sizes by interpolation, beyond them along the
fitted exponent from the nearest measured point (said so in `basis`). A cell whose method has no
curve is predicted as unknown and the total is then a lower bound. A cell of a method whose
training work follows the preset (`MethodMeta.preset_schedule`) read off curves measured at another
preset is flagged, and so is the total: `bench scaling --preset P` measures what a `--preset P` run needs.
A forecast assumes a first run: every feature computed and written to the feature cache. Cells
that share a backbone's features with an earlier cell (or a re-run) read them back and finish sooner.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from benchmarks.running.cell import PREDICT_BATCH
from benchmarks.running.scaling import ScalingPoint, ScalingResult, fit_power_law

CELL_OVERHEAD_S = 2.0
REPORT_S = 60.0
"""Writing report.md, tables and every figure at the end of a run (estimate; `--no-report` drops it)."""


@dataclass(frozen=True)
class CellForecast:
    method: str
    variant: str
    dataset: str
    seed: int
    n_train: int
    n_eval: int
    seconds: float | None
    fit_s: float | None
    predict_s: float | None
    basis: str
    other_preset: bool = False
    """True when the curve was measured at another preset and the method's training follows the preset."""


def curve_value(points: Sequence[ScalingPoint], quantity: str, size: float) -> tuple[float | None, str]:
    """`quantity` at `size` from a curve's ok points: (value, how it was read)."""
    pairs = sorted((p.size, getattr(p, quantity)) for p in points if getattr(p, quantity) is not None)
    if not pairs:
        return None, "no curve"
    if len(pairs) == 1:
        return float(pairs[0][1]), "one point (does not grow with training images)"
    sizes = [s for s, _ in pairs]
    values = [max(v, 1e-9) for _, v in pairs]
    size = max(size, 1e-9)
    if sizes[0] <= size <= sizes[-1]:
        return float(np.exp(np.interp(np.log(size), np.log(sizes), np.log(values)))), "interpolated"
    law = fit_power_law(sizes, values)
    exponent = law.exponent if law is not None else 0.0
    anchor_size, anchor_value = (pairs[0] if size < sizes[0] else pairs[-1])
    where = "below" if size < sizes[0] else "beyond"
    return (float(max(anchor_value, 1e-9) * (size / anchor_size) ** exponent),
            f"extrapolated {where} {sizes[0]}-{sizes[-1]} (exponent {exponent:.2f})")


def bootstrap_seconds(n_test: int, n_bootstrap: int) -> float:
    """Wall time of the cell's metrics bootstrap on `n_test` images, timed now on random scores."""
    from benchmarks import metrics

    rng = np.random.default_rng(0)
    labels = (np.arange(max(n_test, 2)) % 2).astype(int)
    scores = rng.random(labels.size)
    threshold = metrics.choose_threshold(scores, labels)
    start = time.perf_counter()
    metrics.image_metrics(scores, labels, threshold, n_bootstrap=n_bootstrap, seed=0)
    return time.perf_counter() - start


def predict_images_by_batch(n_eval: int, n_test: int, latency_images: int, warmup: int,
                            batch_sizes: Sequence[int]) -> dict[int, int]:
    """Images a cell pushes through `predict`, by the batch size they go in: evaluation (val + test)
    at `PREDICT_BATCH`; latency warm-up, timing and the FLOP count (2) at 1; throughput batches,
    with one warm-up batch each, at their sizes."""
    timed = min(latency_images, n_test)
    counts = {PREDICT_BATCH: n_eval}
    counts[1] = counts.get(1, 0) + min(warmup, timed) + timed + 2
    for size in batch_sizes:
        if size <= timed:
            counts[size] = counts.get(size, 0) + size + (timed // size) * size
    return counts


def per_image_seconds(batch1_ms: float, batched_ms: float | None, batch: int) -> float:
    """Per-image predict time at `batch`: log-log between batch 1 and `PREDICT_BATCH`, flat above."""
    if batched_ms is None or batch <= 1:
        return batch1_ms / 1000
    if batch >= PREDICT_BATCH:
        return batched_ms / 1000
    share = math.log(batch) / math.log(PREDICT_BATCH)
    return math.exp((1 - share) * math.log(max(batch1_ms, 1e-9)) + share * math.log(max(batched_ms, 1e-9))) / 1000


def forecast_cells(config: object, scaling: ScalingResult) -> list[CellForecast]:
    """Every cell of `config`'s grid (a `RunConfig`) with its predicted seconds."""
    from benchmarks.data.loaders import load_dataset
    from benchmarks.plugins.registry import BASELINES
    from benchmarks.running.cell import CellSkipped, cap_eval, select_train
    from benchmarks.running.runner import expand_grid

    preset = config.preset  # type: ignore[attr-defined]
    datasets = {name: load_dataset(name, scale=preset.data_scale) for name in config.datasets}  # type: ignore[attr-defined]
    bootstrap: dict[int, float] = {}
    curve_preset = str(scaling.settings.get("preset", "default"))
    evaluated: set[tuple[str, str]] = set()
    out = []
    for cell in expand_grid(config):  # type: ignore[arg-type]
        dataset = datasets[cell.dataset]
        spec = BASELINES.get(cell.method).meta.variants[cell.variant]
        try:
            n_train = len(select_train(dataset.records, spec, cell.seed, preset.max_train_images))
        except CellSkipped:
            out.append(CellForecast(cell.method, cell.variant, cell.dataset, cell.seed, 0, 0, 0.0, 0.0, 0.0,
                                    "skipped by its protocol"))
            continue
        n_val = len(cap_eval(dataset.split("val"), preset.max_eval_images))
        n_test = len(cap_eval(dataset.split("test"), preset.max_eval_images))
        points = scaling.curve(f"{cell.method}/{cell.variant}", "train")
        fit_s, basis = curve_value(points, "fit_s", n_train)
        per_image_ms, _ = curve_value(points, "predict_ms", n_train)
        batched_ms, _ = curve_value(points, "predict_batch_ms", n_train)
        cached_ms, _ = curve_value(points, "predict_cached_ms", n_train)
        decode_ms, _ = curve_value(points, "decode_ms", n_train)
        setup_s, _ = curve_value(points, "setup_s", n_train)
        if fit_s is None or per_image_ms is None:
            out.append(CellForecast(cell.method, cell.variant, cell.dataset, cell.seed, n_train, n_val + n_test,
                                    None, None, None, "no curve: run `bench scaling` with this method"))
            continue
        by_batch = predict_images_by_batch(n_val + n_test, n_test, preset.latency_images, preset.latency_warmup,
                                           preset.throughput_batch_sizes)
        predict_s = sum(count * per_image_seconds(per_image_ms, batched_ms, batch) for batch, count in by_batch.items())
        if (cell.method, cell.dataset) in evaluated and cached_ms is not None and batched_ms is not None:
            predict_s += (n_val + n_test) * (cached_ms - batched_ms) / 1000
            basis += "; val/test features cached by an earlier cell"
        evaluated.add((cell.method, cell.dataset))
        other = curve_preset != preset.name and BASELINES.get(cell.method).meta.preset_schedule
        if other:
            basis += (f"; curve measured at preset {curve_preset}, but this method's training follows the preset: "
                      f"its {preset.name} time is not what the curve says")
        if n_test not in bootstrap:
            bootstrap[n_test] = bootstrap_seconds(n_test, preset.bootstrap_samples)
        seconds = (fit_s + predict_s + (decode_ms or 0.0) / 1000 * (n_train + n_val + n_test) + (setup_s or 0.0)
                   + bootstrap[n_test] + CELL_OVERHEAD_S)
        out.append(CellForecast(cell.method, cell.variant, cell.dataset, cell.seed, n_train, n_val + n_test,
                                seconds, fit_s, predict_s, basis, other))
    return out


def format_forecast(cells: Sequence[CellForecast], report: bool, scaling_source: str) -> str:
    """The plan as a table with the predicted total."""
    lines = [f"{'cell':44s} {'train':>6s} {'eval':>6s} {'fit s':>9s} {'predict s':>10s} {'total s':>9s}  basis"]
    for c in cells:
        def num(value: float | None, width: int) -> str:
            return f"{value:{width}.1f}" if value is not None else f"{'?':>{width}s}"

        name = f"{c.method}/{c.variant} {c.dataset} s{c.seed}"
        lines.append(f"{name[:44]:44s} {c.n_train:6d} {c.n_eval:6d} {num(c.fit_s, 9)} {num(c.predict_s, 10)} "
                     f"{num(c.seconds, 9)}  {c.basis}")
    known = [c.seconds for c in cells if c.seconds is not None]
    total = sum(known) + (REPORT_S if report else 0.0)
    unknown = len(cells) - len(known)
    other = sum(c.other_preset for c in cells)
    bound = f" (a lower bound: {unknown} cell(s) without a curve)" if unknown else ""
    if other:
        bound += (f" (uncertain: {other} cell(s) of methods that train differently at this preset were read "
                  "off another preset's curves; `bench scaling --preset` with this run's preset measures them)")
    lines.append(f"predicted wall time: {_duration(total)}{bound}, from {scaling_source}"
                 + (f" (+{REPORT_S:.0f} s for the report and figures)" if report else ""))
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    hours, rest = divmod(seconds, 3600)
    return f"{int(hours)} h {math.ceil(rest / 60):d} min" if hours else f"{seconds / 60:.1f} min"
