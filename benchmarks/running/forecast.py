"""A run's wall time predicted before it starts, from the curves `bench scaling` measured.

Per cell, with its real counts (the variant's protocol applied to the dataset at the preset's
scale and caps, exactly as the cell will select them):
- fit: the `method/variant` fit-time curve at the cell's number of training images;
- prediction: the per-image predict time (same curve, batch 1) times every image the cell pushes
  through `predict`: val and test, the latency protocol's warm-up and timed images, its
  throughput batches (one warm-up batch each) and the FLOP count's profiled call (counted as 2);
- data: the curve's decode time per image times training and evaluation images;
- setup: the plugin's construction time at that point;
- metrics: the stratified bootstrap at the preset's resamples, timed here on the cell's test size;
- `CELL_OVERHEAD_S` per cell (forking the cell process, writing its files), an estimate.
Curves are read in log-log space: between measured sizes by interpolation, beyond them along the
fitted exponent from the nearest measured point (said so in `basis`). A cell whose method has no
curve is predicted as unknown and the total is then a lower bound.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

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


def predict_calls(n_eval: int, n_test: int, latency_images: int, warmup: int, batch_sizes: Sequence[int]) -> int:
    """Images a cell pushes through `predict`: evaluation, latency warm-up and timing, throughput
    batches with one warm-up batch each, and the FLOP count (2)."""
    timed = min(latency_images, n_test)
    throughput = sum(size + (timed // size) * size for size in batch_sizes if size <= timed)
    return n_eval + min(warmup, timed) + timed + throughput + 2


def forecast_cells(config: object, scaling: ScalingResult) -> list[CellForecast]:
    """Every cell of `config`'s grid (a `RunConfig`) with its predicted seconds."""
    from benchmarks.data.loaders import load_dataset
    from benchmarks.plugins.registry import BASELINES
    from benchmarks.running.cell import CellSkipped, cap_eval, select_train
    from benchmarks.running.runner import expand_grid

    preset = config.preset  # type: ignore[attr-defined]
    datasets = {name: load_dataset(name, scale=preset.data_scale) for name in config.datasets}  # type: ignore[attr-defined]
    bootstrap: dict[int, float] = {}
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
        decode_ms, _ = curve_value(points, "decode_ms", n_train)
        setup_s, _ = curve_value(points, "setup_s", n_train)
        if fit_s is None or per_image_ms is None:
            out.append(CellForecast(cell.method, cell.variant, cell.dataset, cell.seed, n_train, n_val + n_test,
                                    None, None, None, "no curve: run `bench scaling` with this method"))
            continue
        calls = predict_calls(n_val + n_test, n_test, preset.latency_images, preset.latency_warmup,
                              preset.throughput_batch_sizes)
        predict_s = per_image_ms / 1000 * calls
        if n_test not in bootstrap:
            bootstrap[n_test] = bootstrap_seconds(n_test, preset.bootstrap_samples)
        seconds = (fit_s + predict_s + (decode_ms or 0.0) / 1000 * (n_train + n_val + n_test) + (setup_s or 0.0)
                   + bootstrap[n_test] + CELL_OVERHEAD_S)
        out.append(CellForecast(cell.method, cell.variant, cell.dataset, cell.seed, n_train, n_val + n_test,
                                seconds, fit_s, predict_s, basis))
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
    bound = f" (a lower bound: {unknown} cell(s) without a curve)" if unknown else ""
    lines.append(f"predicted wall time: {_duration(total)}{bound}, from {scaling_source}"
                 + (f" (+{REPORT_S:.0f} s for the report and figures)" if report else ""))
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    hours, rest = divmod(seconds, 3600)
    return f"{int(hours)} h {math.ceil(rest / 60):d} min" if hours else f"{seconds / 60:.1f} min"
