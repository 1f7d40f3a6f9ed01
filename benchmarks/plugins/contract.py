"""The plugin contract: what a baseline declares, receives and returns (SPEC 4)."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from benchmarks.data.schema import ImageRecord
from benchmarks.plugins.location_grid import GRID_WORDS
from benchmarks.plugins.weights import WeightSpec

if TYPE_CHECKING:
    from benchmarks.plugins.feature_cache import FeatureCache
    from benchmarks.plugins.weights import WeightsResolver
    from benchmarks.running.presets import Preset


class Protocol(str, enum.Enum):
    """Which training data the runner hands to `fit`."""

    ZERO_SHOT = "zero-shot"  # no training images at all
    FEW_SHOT = "few-shot"  # `shots` normal training images, drawn with the cell's seed
    FULL_SHOT = "full-shot"  # every normal training image
    SUPERVISED = "supervised"  # every training image, with labels and masks


@dataclass(frozen=True)
class VariantSpec:
    """One variant of a method: its protocol and which training sources it may see."""

    protocol: Protocol
    shots: int | None = None
    sources: tuple[str, ...] = ("real",)
    description: str = ""

    def __post_init__(self) -> None:
        if self.protocol is Protocol.FEW_SHOT and not self.shots:
            raise ValueError("a few-shot variant needs shots >= 1")


@dataclass(frozen=True)
class PublishedResult:
    """One published number of a method and where a reader finds it, declared in the method's meta.

    Values are in percent, as printed. `variants` are the method's variants that run the paper's
    `protocol`; `dataset_kind` the kind of data it was measured on (`mvtec`, `visa`,
    `smartphone-study`; see `benchmarks.reporting.published`); `metric` the record's name for it
    (`image_auroc`, `f1`, `decision_accuracy`, ...). `paper` and `table` say where it is printed.
    `requires` lists provenance facts (`Baseline.provenance`) every reproducing cell must report
    as true; `never_comparable` says why this suite's method can never reproduce it (shown for
    reference only). `method` is filled in by the harness from the declaring meta.
    """

    variants: tuple[str, ...]
    dataset_kind: str
    protocol: str
    metric: str
    value: float
    paper: str
    table: str
    note: str = ""
    requires: tuple[str, ...] = ()
    never_comparable: str = ""
    method: str = ""

    def to_json(self) -> dict[str, object]:
        return {**{k: getattr(self, k) for k in self.__dataclass_fields__ if k != "method"},
                "variants": list(self.variants), "requires": list(self.requires)}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any], method: str) -> PublishedResult:
        return cls(**{**obj, "variants": tuple(obj["variants"]), "requires": tuple(obj.get("requires", ())),
                      "method": method})


@dataclass(frozen=True)
class Ablation:
    """Variants of a method that form an ablation, in order, each with a short note for the axis.

    The report draws it (`ablation_<method>` figures, titled "<subject> ablation") beside the
    published numbers of `reference_kind` / `reference_metric` for the same variants, labelled
    `reference_label`.
    """

    subject: str
    variants: tuple[str, ...]
    notes: Mapping[str, str] = field(default_factory=dict)
    reference_kind: str | None = None
    reference_metric: str = "f1"
    reference_label: str = "published"

    def to_json(self) -> dict[str, object]:
        return {"subject": self.subject, "variants": list(self.variants), "notes": dict(self.notes),
                "reference_kind": self.reference_kind, "reference_metric": self.reference_metric,
                "reference_label": self.reference_label}

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> Ablation:
        return cls(**{**obj, "variants": tuple(obj["variants"]), "notes": dict(obj.get("notes", {}))})


@dataclass(frozen=True)
class LibraryTwin:
    """The same method as a library ships it, which `bench scaling` runs beside the plugin on the
    same work, so the ratio of their costs is measured at every size.

    method: the registered name of the library's version (`anomalib:Patchcore`); options: its
    options; own_options: the plugin's options that make the work the same; weights: the weights
    mode of both sides (costs do not depend on the weights' values, and random weights need no
    download); note: what the two sides share.
    """

    method: str
    options: Mapping[str, Any]
    own_options: Mapping[str, Any]
    weights: str = "random"
    note: str = ""


@dataclass(frozen=True)
class TinySetup:
    """The smallest working configuration of a method: random init, tiny input, seconds on a CPU.

    The suite's contract tests run every registered method with it (odd image sizes, batch 1,
    round trips), so a new plugin is tested the day it is registered. `options` are the method's
    `--option` values; `variant` one of its variants.
    """

    variant: str
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MapPooling:
    """How a method forms its image score from its anomaly map, so the harness can form the same
    score inside a region of interest (SPEC 7, `--roi`) without knowing the method.

    kind "max": the largest map value; "top_mean": the mean of the largest `fraction` of the map's
    values (at least one). The harness pools the map as the method returns it (upsampled, smoothed);
    where the method pools another grid (PatchCore's raw patch scores), the run records the map's
    whole-image pooling beside the method's own score, so the ROI's effect is read apart from that."""

    kind: str
    fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("max", "top_mean"):
            raise ValueError(f"map pooling {self.kind!r}: expected max or top_mean")
        if self.kind == "top_mean" and not 0 < self.fraction <= 1:
            raise ValueError(f"top_mean pooling needs 0 < fraction <= 1, got {self.fraction}")

    def pool(self, values: np.ndarray) -> float:
        """The image score of the map values `values` (any shape; an empty selection is NaN)."""
        flat = np.asarray(values, dtype=np.float64).ravel()
        if flat.size == 0:
            return float("nan")
        if self.kind == "max":
            return float(flat.max())
        count = max(1, int(self.fraction * flat.size))
        return float(np.partition(flat, flat.size - count)[flat.size - count:].mean())

    def describe(self) -> str:
        return "max of the map" if self.kind == "max" else f"mean of the map's top {self.fraction:.0%}"


@dataclass(frozen=True)
class MethodMeta:
    """Facts about a method, written into every result it produces (timm PretrainedCfg-like)."""

    name: str
    paper: str
    backbone: str
    weights_id: str
    input_size: int
    variants: Mapping[str, VariantSpec]
    default_variants: tuple[str, ...] = ("default",)
    needs_masks: bool = False
    license: str = "see upstream"
    notes: str = ""
    weight_specs: tuple[WeightSpec, ...] = ()
    """Every backbone the method may load, its substitute included (for `list weights`, the offline
    hint and the cell identity that makes resume recompute once real weights appear)."""
    options: type | None = None
    """The method's options: a frozen dataclass whose fields all have defaults and type annotations
    (`benchmarks.plugins.options`); `--option METHOD.KEY=VALUE` is validated against it before a run starts.
    None: the method takes no options."""
    tiny: TinySetup | None = None
    """How the contract tests build this method small (None: they cannot, and say so)."""
    published: tuple[PublishedResult, ...] = ()
    """The method's published numbers, for the report's "published vs reproduced" section."""
    ablation: Ablation | None = None
    """Variants that form the method's ablation study (drawn by the report)."""
    library_twin: LibraryTwin | None = None
    """The library's own version of the method, timed beside it by `bench scaling` (None: none)."""
    resolution_options: Mapping[str, float] = field(default_factory=dict)
    """The integer options that set the model's input side, each as a multiple of that side
    (PatchCore: `{"image_size": 1.0, "crop_size": 0.875}`): how `bench scaling` grows the input
    resolution. Empty: the input size is fixed by the backbone (no resolution curve)."""
    preset_schedule: bool = False
    """True when the method's training work follows the run's preset (`Preset.name`: epochs,
    synthesised images): its `bench scaling` curves then hold only for the preset they were
    measured at, and a forecast read off another preset's curves flags the cell and its total."""
    map_pooling: MapPooling | None = None
    """How the image score pools the anomaly map (`MapPooling`); None when the score is not a pooling
    of the map (a text prototype, a classifier head): the harness then keeps the method's own score
    under `--roi`. A method whose pooling depends on its options overrides `Baseline.map_pooling`."""

    def __post_init__(self) -> None:
        unknown = [v for v in self.default_variants if v not in self.variants]
        if unknown:
            raise ValueError(f"{self.name}: default variants {unknown} are not declared")
        if self.tiny is not None and self.tiny.variant not in self.variants:
            raise ValueError(f"{self.name}: the tiny setup's variant {self.tiny.variant!r} is not declared")
        for variant in [v for entry in self.published for v in entry.variants] + list(
            self.ablation.variants if self.ablation else ()
        ):
            if variant not in self.variants:
                raise ValueError(f"{self.name}: published numbers or ablation name the undeclared variant {variant!r}")

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "paper": self.paper,
            "backbone": self.backbone,
            "weights_id": self.weights_id,
            "input_size": self.input_size,
            "variants": {
                k: {"protocol": v.protocol.value, "shots": v.shots, "sources": list(v.sources)}
                for k, v in self.variants.items()
            },
            "needs_masks": self.needs_masks,
            "license": self.license,
            "weights": [spec.model_id for spec in self.weight_specs],
            "options": self.options.__name__ if self.options else None,
        }

    def record_json(self) -> dict[str, object]:
        """What a cell's record stores: `to_json` (which identifies the computation and is hashed for
        resume) plus the declarations the report reads (published numbers, ablation), which are not
        hashed: correcting a published number does not recompute finished cells."""
        return {**self.to_json(), "published": [entry.to_json() for entry in self.published],
                "ablation": self.ablation.to_json() if self.ablation else None,
                "map_pooling": self.map_pooling.describe() if self.map_pooling else None}


@dataclass(frozen=True)
class Sample:
    """An image handed to `fit`: RGB uint8 `(H, W, 3)`, its record, and a bool `(H, W)` mask or None."""

    record: ImageRecord
    image: np.ndarray
    mask: np.ndarray | None = None

    @property
    def label(self) -> int:
        return self.record.label


@dataclass
class Prediction:
    """What `predict` returns for a batch of B images.

    scores: `(B,)` float, higher = more anomalous.
    maps: optional `(B, h, w)` float anomaly maps at any resolution (the runner resizes them to
        each image for pixel metrics); larger = more anomalous.
    texts: optional B answer strings (prompting methods).
    decisions: optional B yes/no answers ("is there an anomaly?"; None where the method gave no
        usable answer): scored with F1 and accuracy against the labels.
    locations: optional B 3x3 location words (`GRID`, e.g. "top left") where the method says the
        anomaly is: scored against the mask's location on anomalies.
    extra: optional per-image columns (name -> B values) stored beside the scores.
    """

    scores: np.ndarray
    maps: np.ndarray | None = None
    texts: list[str] | None = None
    decisions: list[bool | None] | None = None
    locations: list[str | None] | None = None
    extra: dict[str, list[object]] = field(default_factory=dict)

    def check(self, batch_size: int) -> None:
        """Raise ValueError naming what is wrong with this prediction for a batch of `batch_size`."""
        scores = _numeric(self.scores, "scores")
        if scores.shape != (batch_size,):
            raise ValueError(f"scores have shape {scores.shape}, expected ({batch_size},)")
        bad = int((~np.isfinite(scores)).sum())
        if bad:
            raise ValueError(f"{bad} of {batch_size} scores are NaN or infinite")
        if self.maps is not None:
            maps = _numeric(self.maps, "maps")
            if maps.ndim != 3 or maps.shape[0] != batch_size or min(maps.shape[1:]) < 1:
                raise ValueError(f"maps have shape {maps.shape}, expected ({batch_size}, h, w) with h, w >= 1")
            if not np.isfinite(maps).all():
                raise ValueError("maps contain NaN or infinite values")
        if self.texts is not None and len(self.texts) != batch_size:
            raise ValueError(f"{len(self.texts)} texts for {batch_size} images")
        for name, answers in (("decisions", self.decisions), ("locations", self.locations)):
            if answers is not None and len(answers) != batch_size:
                raise ValueError(f"{len(answers)} {name} for {batch_size} images")
        if self.decisions is not None and any(not (d is None or isinstance(d, bool | np.bool_)) for d in self.decisions):
            raise ValueError("decisions must be True, False or None")
        if self.locations is not None and any(loc is not None and loc not in GRID_WORDS for loc in self.locations):
            raise ValueError(f"locations must be 3x3 grid words ({', '.join(GRID_WORDS)}) or None")
        for name, values in self.extra.items():
            if len(values) != batch_size:
                raise ValueError(f"extra column {name!r} has {len(values)} values for {batch_size} images")


def _numeric(values: object, what: str) -> np.ndarray:
    """`values` as a float64 array, or ValueError saying they are not numbers."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{what} are not numeric arrays ({exc})") from None


@dataclass(frozen=True)
class MethodContext:
    """What the runner gives a plugin at construction time."""

    variant: str
    seed: int
    device: str
    weights: WeightsResolver
    preset: Preset
    class_name: str = "object"
    description: str = ""
    work_dir: Path | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    """Plugin-specific overrides (backbone, image size, ...); tests use them for tiny models."""
    feature_cache: FeatureCache | None = None
    """Shared on-disk backbone-feature cache; None disables caching. Off while latency is timed."""
    gemm_path: str = "eager"
    """The path frozen backbones run their matrix products on (`benchmarks.plugins.gemm_path`): the
    runner measures which is fastest on this machine; a plugin applies it with `use_gemm_path`."""


@dataclass(frozen=True)
class ReferenceModel:
    """The library model a plugin wraps, called directly: what `python -m benchmarks bench` times
    against the plugin's `predict` on the same images to show what the wrapper costs.

    prepare: images -> the model's input, computed before timing (the plugin's own preprocessing,
    so both sides see identical tensors); forward: the library call alone, timed.
    scope: "whole method" when `forward` does everything `predict` does (the overhead is then the
    wrapper's alone), "backbone only" when the plugin adds its own scoring on top.
    """

    name: str
    prepare: Callable[[Sequence[np.ndarray]], Any]
    forward: Callable[[Any], Any]
    scope: str = "whole method"


class SavingUnsupported(Exception):
    """A method that cannot save its fitted state; the message says why."""


@dataclass(frozen=True)
class FittedState:
    """A fitted method's state, saved by `run --save-models` and loaded in another process.

    `tensors` are written as safetensors (no pickle); `info` must be JSON-serialisable (numbers,
    strings, lists, dicts). A method decides what goes in: memory banks, trained heads, and the
    frozen backbone itself when its weights are random (real weights are resolved again at load
    and checked against a fingerprint kept in `info`).
    """

    tensors: Mapping[str, torch.Tensor]
    info: Mapping[str, Any] = field(default_factory=dict)


class Baseline(ABC):
    """Base class of every method plugin.

    Subclasses set `meta` and implement `fit` and `predict`. `predict` must do the whole
    pipeline from decoded RGB arrays (resize, normalise, model, scoring): latency is timed on it.
    """

    meta: ClassVar[MethodMeta]

    def __init__(self, context: MethodContext) -> None:
        if context.variant not in self.meta.variants:
            raise ValueError(
                f"{self.meta.name} has no variant {context.variant!r}; "
                f"known: {', '.join(self.meta.variants)}"
            )
        self.context = context

    @property
    def variant(self) -> VariantSpec:
        return self.meta.variants[self.context.variant]

    @abstractmethod
    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> None:
        """Build memory banks / prompts or train. `train` follows the variant's protocol."""

    @abstractmethod
    def predict(self, images: Sequence[np.ndarray]) -> Prediction:
        """Score RGB uint8 `(H, W, 3)` images (sizes may differ); see `Prediction`."""

    def map_pooling(self) -> MapPooling | None:
        """How this fitted instance pools its map into its image score (after `fit`); default the meta's."""
        return self.meta.map_pooling

    def reference_model(self) -> ReferenceModel | None:
        """The wrapped library model, for the wrapper-overhead benchmark (after `fit`); None if none."""
        return None

    def provenance(self) -> dict[str, str | bool | None]:
        """Facts about the fitted model a reader needs to trust a number, stored with the cell
        (after `fit`), e.g. `{"expert_checkpoint": True, "started_from": "..."}`. Published-number
        comparisons read them (`benchmarks.reporting.published.comparability`). Default: none.

        `origin`, when given, names in a few words what a model is that did not learn from the
        dataset's own training images (`"expert checkpoint"`, `"synthetic source"`, `"random
        init"`): figures and tables show it beside the variant wherever the cell is named."""
        return {}

    def fitted_state(self) -> FittedState:
        """What `load_fitted_state` needs to predict exactly as this fitted instance does (after `fit`).

        A method that cannot save raises `SavingUnsupported` saying why (the default)."""
        raise SavingUnsupported(f"{self.meta.name} does not implement saving its fitted state")

    def load_fitted_state(self, state: FittedState) -> None:
        """Become the fitted instance `state` came from, instead of calling `fit` (same context)."""
        raise SavingUnsupported(f"{self.meta.name} does not implement loading a fitted state")


@dataclass(frozen=True)
class MethodFamily:
    """Methods built on demand from a name: `<prefix>:<member>` (e.g. `anomalib:Padim`).

    Registered through the entry-point group `benchmarks.method_families` (the entry point's name
    is the prefix without its colon). `build(member)` returns the member's `Baseline` class, whose
    `meta.name` is `<prefix>:<member>`, or raises ValueError naming the valid members. `example`
    is the member the contract tests run, with `example_tiny`; `description` is shown by `list methods`.
    """

    prefix: str
    build: Callable[[str], type[Baseline]]
    example: str
    example_tiny: TinySetup | None = None
    description: str = ""

    @property
    def example_name(self) -> str:
        return f"{self.prefix}:{self.example}"
