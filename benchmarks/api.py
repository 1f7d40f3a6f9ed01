"""The one surface a method plugin sees of the harness (SPEC 4): import from here, nothing else.

Built-in plugins (`baselines/`) follow the same rule as outside ones; a test checks that they
import no other module of `benchmarks`. What is here:

- the contract: `Baseline`, `MethodMeta` (with its `TinySetup` for the contract tests),
  `VariantSpec`, `Protocol`, `MethodContext`, `Sample`, `Prediction`, `ReferenceModel`, and
  `PublishedResult` and `Ablation` (a method's published numbers and ablation axes, declared in
  its meta), `MethodFamily` for methods built on demand from a name (`anomalib:<Model>`). A method registers
  through the `benchmarks.baselines` entry point of its package (a family through
  `benchmarks.method_families`), never by calling the registry;
- options: `options_from_mapping` (typed options from `--option` values);
- weights: `WeightSpec`, `WeightsResolver`, `ResolvedWeights`, `load_state_dict`, and the bundled
  ImageNet MobileNetV2 (`MOBILENETV2_IN1K`, `build_mobilenetv2`, `stage_outputs`, ...) that
  stands in for a paper backbone offline;
- caching: `FeatureCache`, `weights_fingerprint`, `cache_root`;
- speed: `use_gemm_path(backbone, context.gemm_path)` puts a frozen backbone's linear layers on
  the GEMM path the runner measured to be fastest here (scores unchanged to float rounding);
- answers and thresholds: the 3x3 location words (`GRID`, `GRID_WORDS`, `grid_word`,
  `grid_location`) and `choose_threshold` (the validation-split threshold rule of the metrics);
- `Registry` for a plugin's own registries (e.g. interchangeable towers).
"""

from __future__ import annotations

from benchmarks.data.cache import cache_root
from benchmarks.metrics.threshold import choose_threshold
from benchmarks.plugins.bundled_backbone import (
    MOBILENETV2_IN1K,
    STAGE_CHANNELS,
    STAGE_STRIDES,
    TIMM_NAME,
    build_mobilenetv2,
    is_substitute,
    stage_outputs,
    timm_state_dict,
)
from benchmarks.plugins.contract import (
    Ablation,
    Baseline,
    FittedState,
    LibraryTwin,
    MapPooling,
    MethodContext,
    MethodFamily,
    MethodMeta,
    Prediction,
    Protocol,
    PublishedResult,
    ReferenceModel,
    Sample,
    SavingUnsupported,
    TinySetup,
    VariantSpec,
)
from benchmarks.plugins.feature_cache import FeatureCache, weights_fingerprint
from benchmarks.plugins.gemm_path import use_gemm_path
from benchmarks.plugins.location_grid import GRID, GRID_WORDS, grid_location, grid_word
from benchmarks.plugins.options import options_from_mapping
from benchmarks.plugins.registry import Registry
from benchmarks.plugins.weights import ResolvedWeights, WeightSpec, WeightsResolver, load_state_dict

__all__ = [
    "Ablation",
    "GRID",
    "GRID_WORDS",
    "MOBILENETV2_IN1K",
    "STAGE_CHANNELS",
    "STAGE_STRIDES",
    "TIMM_NAME",
    "Baseline",
    "FittedState",
    "FeatureCache",
    "MethodContext",
    "MethodFamily",
    "LibraryTwin",
    "MapPooling",
    "MethodMeta",
    "Prediction",
    "Protocol",
    "PublishedResult",
    "ReferenceModel",
    "Registry",
    "ResolvedWeights",
    "Sample",
    "SavingUnsupported",
    "TinySetup",
    "VariantSpec",
    "WeightSpec",
    "WeightsResolver",
    "build_mobilenetv2",
    "cache_root",
    "choose_threshold",
    "grid_location",
    "grid_word",
    "is_substitute",
    "load_state_dict",
    "options_from_mapping",
    "stage_outputs",
    "timm_state_dict",
    "use_gemm_path",
    "weights_fingerprint",
]
