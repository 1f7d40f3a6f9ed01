"""Run presets: how big the embedded data, the latency runs and the statistics are."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any


@dataclass(frozen=True)
class Preset:
    """Sizes for one run. Plugins read `name` to pick their own knobs (epochs, coreset ratio).

    data_scale: multiplier of the embedded datasets' default sizes (smartphone-synth, elpv).
    max_train_images / max_eval_images: caps per split after the protocol's selection
        (stratified, seeded); None means no cap.
    latency_images: images timed one by one at batch size 1 after `latency_warmup` untimed calls.
    throughput_batch_sizes: batch sizes tried for throughput; the best is reported.
    bootstrap_samples: resamples for the stratified bootstrap CIs.
    cell_timeout_s: wall-clock limit of one cell (fit + predict + latency), None for none.
    """

    name: str
    data_scale: float = 1.0
    max_train_images: int | None = None
    max_eval_images: int | None = None
    latency_images: int = 30
    latency_warmup: int = 3
    throughput_batch_sizes: tuple[int, ...] = (1, 4, 8)
    bootstrap_samples: int = 1000
    cell_timeout_s: float | None = 3600.0

    def with_overrides(self, **overrides: Any) -> Preset:
        known = {f.name for f in fields(self)}
        unknown = set(overrides) - known
        if unknown:
            raise ValueError(f"unknown preset fields: {sorted(unknown)}")
        return replace(self, **overrides)


PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        name="smoke",
        data_scale=0.25,
        max_train_images=16,
        max_eval_images=16,
        latency_images=3,
        latency_warmup=1,
        throughput_batch_sizes=(4,),
        bootstrap_samples=200,
        cell_timeout_s=3600.0,
    ),
    "default": Preset(name="default", latency_images=20, latency_warmup=2, throughput_batch_sizes=(8,)),
    "paper": Preset(
        name="paper",
        data_scale=4.0,
        latency_images=100,
        latency_warmup=10,
        throughput_batch_sizes=(1, 4, 8, 16, 32),
        bootstrap_samples=2000,
        cell_timeout_s=None,
    ),
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None
