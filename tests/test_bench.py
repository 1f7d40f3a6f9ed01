"""`python -m benchmarks bench`: plugin vs the library model it wraps, on the same inputs."""

from __future__ import annotations

from collections.abc import Callable

import dummy_plugins  # noqa: F401  (registers mean-brightness, which has no reference model)
import numpy as np
import pytest
import torch
from test_patchcore import TINY as PATCHCORE_TINY

from baselines.patchcore import PatchCore
from benchmarks.cli import main
from benchmarks.plugins.contract import MethodContext, Sample
from benchmarks.running.bench import bench_method, bench_variant, format_results

pytestmark = pytest.mark.usefixtures("one_thread")


def test_patchcore_reference_is_anomalibs_forward_and_scores_the_same(
    make_context: Callable[..., MethodContext], toy_task: dict[str, list[Sample]]
) -> None:
    plugin = PatchCore(make_context("k4", **PATCHCORE_TINY))
    plugin.fit(toy_task["train"])
    reference = plugin.reference_model()
    assert reference is not None and reference.scope == "whole method"
    images = [s.image for s in toy_task["test"]]
    with torch.inference_mode():
        theirs = reference.forward(reference.prepare(images)).pred_score.flatten().numpy()
    np.testing.assert_allclose(plugin.predict(images).scores, theirs, rtol=1e-4, atol=1e-4)


def test_bench_times_plugin_and_reference(toy_task: dict[str, list[Sample]]) -> None:
    images = [s.image for s in toy_task["test"][:4]]
    result = bench_method("patchcore", toy_task["train"], images, weights="random", warmup=1,
                          options=PATCHCORE_TINY)
    assert result.variant == "k1"  # the cheapest variant to fit
    assert result.reference == "anomalib PatchcoreModel.forward" and result.images == 4
    assert result.plugin_p50_ms > 0 and result.reference_p50_ms > 0
    none = bench_method("mean-brightness", toy_task["train"], images, weights="random")
    assert none.overhead_pct is None and "no reference" in none.note
    table = format_results([result, none])
    assert "anomalib PatchcoreModel.forward" in table and "no reference model" in table


@pytest.mark.parametrize(("plugin_ms", "reference_ms", "overhead", "ok"), [(12.0, 10.0, 20.0, False),
                                                                         (10.4, 10.0, 4.0, True)])
def test_bench_reports_the_median_overhead_against_the_budget(
    toy_task: dict[str, list[Sample]], monkeypatch: pytest.MonkeyPatch,
    plugin_ms: float, reference_ms: float, overhead: float, ok: bool,
) -> None:
    """Known timings in (medians of plugin and reference seconds), known overhead and verdict out."""
    from benchmarks.running import bench

    def fake_times(*_args: object) -> tuple[list[float], list[float]]:
        return [plugin_ms / 1000, 1.0, plugin_ms / 1000], [reference_ms / 1000, reference_ms / 1000, 0.0]

    monkeypatch.setattr(bench, "time_interleaved", fake_times)
    result = bench_method("patchcore", toy_task["train"], [toy_task["test"][0].image], weights="random",
                          options=PATCHCORE_TINY)
    assert result.plugin_p50_ms == pytest.approx(plugin_ms) and result.reference_p50_ms == pytest.approx(reference_ms)
    assert result.overhead_pct == pytest.approx(overhead) and result.within_budget is ok


def test_bench_variant_prefers_zero_then_fewest_shots() -> None:
    from benchmarks.plugins.registry import BASELINES, load_plugins

    load_plugins()
    assert bench_variant(BASELINES.get("patchcore")) == "k1"
    assert bench_variant(BASELINES.get("winclip")) == "k0"
    assert bench_variant(BASELINES.get("mean-brightness")) == "default"


def test_bench_cli_refuses_unknown_methods(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--methods", "patchcor"]) == 2
    assert "did you mean patchcore" in capsys.readouterr().err
    assert main(["bench", "--images", "0"]) == 2
