"""`python -m benchmarks bench`: what each plugin's wrapper costs over the library model it wraps.

For every method that declares a `ReferenceModel`, the plugin is fitted on a few normal images of
the embedded dataset, then each timed image goes through `plugin.predict([image])` and through
the reference's `forward(prepare([image]))` (preparation untimed), alternating the two so that a
load change on a shared machine hits both sides alike. Reported: batch-1 p50 of both and the
overhead in percent; `scope` says whether the reference covers the whole method or only its
backbone (then the difference is the method's own scoring, not wrapper cost).
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.data.loaders import load_dataset
from benchmarks.plugins.contract import Baseline, MethodContext, Protocol, ReferenceModel, Sample
from benchmarks.plugins.registry import BASELINES, load_plugins
from benchmarks.plugins.weights import WeightsResolver
from benchmarks.running import compute, latency
from benchmarks.running.cell import load_samples, select_train
from benchmarks.running.presets import get_preset

log = logging.getLogger(__name__)

OVERHEAD_BUDGET_PCT = 5.0


@dataclass(frozen=True)
class BenchResult:
    """One method's wrapper-overhead measurement (times in milliseconds, batch size 1)."""

    method: str
    variant: str
    reference: str | None
    scope: str | None
    images: int
    plugin_p50_ms: float | None
    reference_p50_ms: float | None
    overhead_pct: float | None
    within_budget: bool | None
    weights: str
    note: str = ""


def bench_variant(cls: type[Baseline]) -> str:
    """The cheapest variant to fit: zero-shot, then few-shot (fewest shots), then the first default."""
    variants = cls.meta.variants

    def cost(name: str) -> tuple[int, int]:
        spec = variants[name]
        order = {Protocol.ZERO_SHOT: 0, Protocol.FEW_SHOT: 1}.get(spec.protocol, 2)
        return order, spec.shots or 0

    return min(variants, key=lambda name: (cost(name), name not in cls.meta.default_variants))


def bench_method(
    name: str,
    train_pool: Sequence[Sample],
    images: Sequence[np.ndarray],
    *,
    device: str = "cpu",
    weights: str = "auto",
    warmup: int = 2,
    variant: str | None = None,
    options: Mapping[str, Any] | None = None,
) -> BenchResult:
    """Fit `name` on its protocol's share of `train_pool`, then time plugin vs reference on `images`."""
    cls = BASELINES.get(name)
    variant = variant or bench_variant(cls)
    spec = cls.meta.variants[variant]
    resolver = WeightsResolver(mode=weights)  # type: ignore[arg-type]
    with tempfile.TemporaryDirectory() as scratch:
        context = MethodContext(
            variant=variant, seed=0, device=device, weights=resolver, preset=get_preset("smoke"),
            class_name="smartphone", work_dir=Path(scratch), options=dict(options or {}),
            gemm_path=compute.gemm_path(device).path,
        )
        plugin = cls(context)
        chosen = {r.row for r in select_train([s.record for s in train_pool], spec, seed=0, cap=16)}
        train = [s for s in train_pool if s.record.row in chosen]
        plugin.fit(train, None)
        reference = plugin.reference_model()
        if reference is None:
            return BenchResult(name, variant, None, None, 0, None, None, None, None, resolver.effective_mode,
                               note="the plugin declares no reference model")
        plugin_s, reference_s = time_interleaved(plugin, reference, images, device, warmup)
    plugin_ms, reference_ms = 1000 * float(np.median(plugin_s)), 1000 * float(np.median(reference_s))
    overhead = 100.0 * (plugin_ms - reference_ms) / reference_ms
    return BenchResult(
        method=name, variant=variant, reference=reference.name, scope=reference.scope, images=len(images),
        plugin_p50_ms=plugin_ms, reference_p50_ms=reference_ms, overhead_pct=overhead,
        within_budget=overhead <= OVERHEAD_BUDGET_PCT if reference.scope == "whole method" else None,
        weights=resolver.effective_mode,
    )


def time_interleaved(
    plugin: Baseline, reference: ReferenceModel, images: Sequence[np.ndarray], device: str, warmup: int
) -> tuple[list[float], list[float]]:
    """Batch-1 seconds per image for `plugin.predict` and `reference.forward`, alternating A/B then B/A."""
    prepared = [reference.prepare([image]) for image in images]
    with torch.inference_mode():
        for image, x in list(zip(images, prepared, strict=True))[: max(1, warmup)]:
            plugin.predict([image])
            reference.forward(x)
        plugin_s, reference_s = [], []
        for i, (image, x) in enumerate(zip(images, prepared, strict=True)):
            run_plugin = lambda image=image: plugin.predict([image])  # noqa: E731
            run_reference = lambda x=x: reference.forward(x)  # noqa: E731
            if i % 2 == 0:
                plugin_s.append(latency.time_call(run_plugin, device))
                reference_s.append(latency.time_call(run_reference, device))
            else:
                reference_s.append(latency.time_call(run_reference, device))
                plugin_s.append(latency.time_call(run_plugin, device))
    return plugin_s, reference_s


def run_bench(
    methods: Sequence[str] | None = None,
    *,
    n_images: int = 10,
    device: str = "cpu",
    weights: str = "auto",
    warmup: int = 2,
    dataset: str = "smartphone-synth",
    scale: float = 0.25,
) -> list[BenchResult]:
    """`bench_method` for each method (all registered ones by default); a failing method is reported, not fatal."""
    load_plugins()
    names = list(methods or BASELINES.names())
    data = load_dataset(dataset, scale=scale)
    train_pool = load_samples([r for r in data.split("train") if r.label == 0][:32], with_masks=False)
    images = [s.image for s in load_samples(list(data.split("test"))[:n_images], with_masks=False)]
    results = []
    for name in names:
        try:
            results.append(bench_method(name, train_pool, images, device=device, weights=weights, warmup=warmup))
        except Exception as exc:  # one broken plugin must not hide the others' numbers
            log.error("bench %s failed: %s", name, exc)
            results.append(BenchResult(name, "", None, None, 0, None, None, None, None, weights,
                                       note=f"failed: {type(exc).__name__}: {exc}"))
    return results


def format_results(results: Sequence[BenchResult]) -> str:
    header = f"{'method':12s} {'variant':14s} {'plugin p50':>11s} {'reference p50':>14s} {'overhead':>9s}  reference"
    lines = [header, "-" * len(header)]
    for r in results:
        if r.overhead_pct is None:
            lines.append(f"{r.method:12s} {r.variant:14s} {'-':>11s} {'-':>14s} {'-':>9s}  {r.note}")
            continue
        verdict = {True: "ok", False: f"over {OVERHEAD_BUDGET_PCT:.0f} %", None: "n/a"}[r.within_budget]
        lines.append(
            f"{r.method:12s} {r.variant:14s} {r.plugin_p50_ms:9.1f}ms {r.reference_p50_ms:12.1f}ms "
            f"{r.overhead_pct:+8.1f}%  {r.reference} [{r.scope}; {verdict}; {r.weights} weights]"
        )
    return "\n".join(lines)


def write_results(results: Sequence[BenchResult], path: Path, device: str = "cpu") -> None:
    from benchmarks.running import environment

    payload = {
        "results": [asdict(r) for r in results],
        "versions": environment.versions(),
        "hardware": environment.hardware(device),
        "torch_threads": torch.get_num_threads(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
