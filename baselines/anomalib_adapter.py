"""Any anomalib image model as method `anomalib:<ModelName>` (`anomalib:Padim`, `anomalib:Dinomaly`).

`anomalib_method(name)` builds (once) and registers a `Baseline` subclass for one anomalib model;
a default set is registered at import. How each model is fitted follows its own Lightning
module, driven without anomalib's Engine:
- memory-bank models (`MemoryBankMixin`: Padim, Patchcore, Dfm, Dfkde, AnomalyDINO): one pass
  of the module's `training_step` over the training images, then its `fit()`; no Trainer.
- gradient-trained models (Dinomaly, Supersimplenet, UniNet, ...): a bare Lightning `Trainer`
  (no logger, checkpoints, validation or progress bar) runs the module's own
  `training_step` / `configure_optimizers`, since their optimisers and schedulers read the
  trainer. Length: options `max_steps` / `max_epochs`, else the model's `trainer_arguments`,
  else `FALLBACK_MAX_STEPS` (Dinomaly's reference is 5000 steps at batch 16; keep it small on CPU).
Inputs go through the model's own default pre-processing (`configure_pre_processor`, e.g.
256x256 for Padim, 448 -> crop 392 for Dinomaly); scores and maps are the torch model's raw
outputs, without anomalib's post-processor (no score normalisation, no thresholds).

Weights: while the model is built, `timm.create_model(..., pretrained=True)` and torchvision's
`get_model_weights(...).DEFAULT` builders are intercepted so that every backbone a model asks
for is resolved through `context.weights` (timm specs from timm's default tag, torchvision
files in the torch hub cache or the weights dir) and random-initialised, stamped, when absent.
Nothing is downloaded by anomalib or timm themselves.

Substitution (`--weights auto` offline, or `substitute`): a model whose `backbone` argument is a
timm CNN read through ResNet-style `layers` (Padim, Patchcore, Stfpm, Dfm, Dfkde, ...) gets the
bundled ImageNet MobileNetV2 (`benchmarks.plugins.bundled_backbone`) when its own backbone's weights are
missing: `backbone="mobilenetv2_100"` and each `layerN` replaced by the MobileNetV2 stage at the
same stride (`SUBSTITUTE_STAGES`: layer1 -> blocks.1 /4, layer2 -> blocks.2 /8, layer3 ->
blocks.4 /16, layer4 -> blocks.6 /32), Padim's `n_features` capped at the substitute's channels.
The cell is stamped `substitute`. Models with other backbones (ViTs, torchvision teachers) stay
random-init offline. A `backbone` set in `model_kwargs` is the user's choice and never swapped.

Offline with random weights (toy task of 64x64 images, 8 normal train, 6+6 test; CPU;
anomalib 2.7.0; every model built, fitted and scored end to end, AUROCs meaningless at random):
- Padim (resnet18, 64 px): one pass + `fit`, a few seconds; covered by the tests.
- Patchcore (resnet18, 64 px): works, but its `KCenterGreedy` picks ~12 points/s here; use the
  `patchcore` method for benchmarking.
- Dinomaly: the default ViT-B/14-reg4 (148 M parameters) builds in ~9 s; trained 2 steps and
  scored with `vit_small_patch14_reg4_dinov2` at 126 -> crop 112 px (~70 s).
- Supersimplenet (resnet18): 1 epoch at 256 px (~130 s); at 64 px its Perlin anomaly
  generator fails (feature map too small), so keep its 256 px default.
- UniNet: its torchvision WRN50 teachers go through the interception; 1 epoch at 64 px (~130 s).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar

import anomalib.models
import numpy as np
import timm
import torch
import torchvision
from anomalib.data import ImageBatch
from anomalib.models import AnomalibModule
from anomalib.models.components import MemoryBankMixin
from lightning.pytorch import Trainer
from torch import nn
from torch.utils.data import DataLoader
from torchvision import tv_tensors

from baselines.backbone_weights import load_backbone_weights, timm_weight_spec
from baselines.common import batches
from benchmarks.api import (
    MOBILENETV2_IN1K,
    STAGE_CHANNELS,
    TIMM_NAME,
    Baseline,
    MethodContext,
    MethodFamily,
    MethodMeta,
    Prediction,
    Protocol,
    ResolvedWeights,
    Sample,
    TinySetup,
    VariantSpec,
    WeightSpec,
    WeightsResolver,
    is_substitute,
    load_state_dict,
    options_from_mapping,
    timm_state_dict,
)

log = logging.getLogger(__name__)

PREFIX = "anomalib:"
OFFLINE_TESTED_MODELS = ("Padim", "Patchcore", "Dinomaly", "Supersimplenet", "UniNet")
"""anomalib models checked to build, train and score offline with random weights."""
FALLBACK_MAX_STEPS = 1000
# ResNet stage -> the bundled MobileNetV2's stage at the same output stride (see the module docstring)
SUBSTITUTE_STAGES = {"layer1": "blocks.1", "layer2": "blocks.2", "layer3": "blocks.4", "layer4": "blocks.6"}
SUBSTITUTE_N_FEATURES = 100  # Padim's random feature selection (its resnet18 default)
_TRAINER_KEYS = ("gradient_clip_val", "gradient_clip_algorithm", "max_epochs", "max_steps", "accumulate_grad_batches")


@dataclass(frozen=True)
class AnomalibOptions:
    """Settings that `MethodContext.options` may override.

    model_kwargs: extra keyword arguments for the anomalib module (e.g. `{"backbone": "resnet18"}`).
    pre_processor_kwargs: arguments for the model's `configure_pre_processor` (e.g. `image_size`).
    """

    batch_size: int = 32
    max_epochs: int | None = None
    max_steps: int | None = None
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    pre_processor_kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> AnomalibOptions:
        return options_from_mapping(cls, options, "anomalib adapter")


class AnomalibBaseline(Baseline):
    """Base of the generated `anomalib:<Model>` classes; `model_class` is set per subclass."""

    model_class: ClassVar[type[AnomalibModule]]

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        self.options = AnomalibOptions.from_mapping(context.options)
        self.device = torch.device(context.device)
        torch.manual_seed(context.seed)
        decided, substitute_kwargs = self._substitution()
        with backbones_through_resolver(context.weights, decided):
            self.module = self.model_class(**{**self._module_kwargs(), **substitute_kwargs})
        self.module.to(self.device)
        self.transform = self.model_class.configure_pre_processor(**self.options.pre_processor_kwargs).transform
        self.fitted = False

    def _substitution(self) -> tuple[dict[str, ResolvedWeights], dict[str, Any]]:
        """For a ResNet-style CNN model: resolve its default backbone with the bundled substitute, and
        the constructor arguments that swap it in when the substitute is what the resolver gave."""
        params = inspect.signature(self.model_class.__init__).parameters
        if "backbone" in self.options.model_kwargs or "backbone" not in params or "layers" not in params:
            return {}, {}
        backbone, layers = params["backbone"].default, params["layers"].default
        if not (isinstance(backbone, str) and isinstance(layers, list | tuple) and layers
                and all(layer in SUBSTITUTE_STAGES for layer in layers)):
            return {}, {}
        try:
            spec = timm_weight_spec(backbone)
        except ValueError:  # not a timm model with hub weights
            return {}, {}
        resolved = self.context.weights.resolve(spec, substitute=MOBILENETV2_IN1K)
        if not is_substitute(resolved):
            return {backbone: resolved}, {}
        stages = [SUBSTITUTE_STAGES[layer] for layer in layers]
        kwargs: dict[str, Any] = {"backbone": TIMM_NAME, "layers": stages}
        if "n_features" in params and params["n_features"].default is None:
            kwargs["n_features"] = min(SUBSTITUTE_N_FEATURES, sum(STAGE_CHANNELS[s] for s in stages))
        return {TIMM_NAME: resolved}, kwargs

    def _module_kwargs(self) -> dict[str, Any]:
        params = inspect.signature(self.model_class.__init__).parameters
        kwargs: dict[str, Any] = {k: False for k in ("pre_processor", "post_processor", "evaluator", "visualizer")}
        if "pre_trained" in params:
            kwargs["pre_trained"] = True  # intercepted: resolved through the suite's resolver
        return {**kwargs, **self.options.model_kwargs}

    def to_batch(self, images: Sequence[np.ndarray], samples: Sequence[Sample] | None = None) -> ImageBatch:
        """RGB uint8 images -> a pre-processed `ImageBatch`; with `samples`, also their labels and masks."""
        if samples is None:
            return ImageBatch(image=torch.stack([self.transform(_image_tensor(im)) for im in images]))
        tensors, masks = [], []
        for image, sample in zip(images, samples, strict=True):
            mask = np.zeros(image.shape[:2], dtype=bool) if sample.mask is None else sample.mask
            t, m = self.transform(_image_tensor(image), tv_tensors.Mask(torch.from_numpy(mask)))
            tensors.append(t)
            masks.append(m.bool())
        labels = torch.tensor([s.label for s in samples], dtype=torch.bool)
        return ImageBatch(
            image=torch.stack(tensors).as_subclass(torch.Tensor),
            gt_mask=torch.stack(masks).as_subclass(torch.Tensor),
            gt_label=labels,
        )

    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> None:
        if not train:
            raise ValueError(f"{self.meta.name} needs at least one training image")
        chunks = list(batches(train, self.options.batch_size))
        if isinstance(self.module, MemoryBankMixin):
            self.module.train()
            with torch.no_grad():
                for index, chunk in enumerate(chunks):
                    batch = self.to_batch([s.image for s in chunk], chunk)
                    self.module.training_step(_on_device(batch, self.device), index)
            self.module.fit()
            self.module._is_fitted = torch.tensor([True], device=self.device)  # what its epoch-end hook sets
        else:
            loader = DataLoader(chunks, batch_size=None, collate_fn=lambda c: self.to_batch([s.image for s in c], c))
            self._trainer().fit(self.module, train_dataloaders=loader)
        self.module.to(self.device).eval()
        self.fitted = True

    def _trainer(self) -> Trainer:
        wanted = {k: v for k, v in self.module.trainer_arguments.items() if k in _TRAINER_KEYS}
        for key in ("max_epochs", "max_steps"):
            if getattr(self.options, key) is not None:
                wanted[key] = getattr(self.options, key)
        if self.options.max_epochs is not None and self.options.max_steps is None:
            wanted.pop("max_steps", None)
        if wanted.get("max_epochs") is None and wanted.get("max_steps") is None:
            log.warning("%s sets no training length; training %d steps (options max_steps / max_epochs)",
                        self.meta.name, FALLBACK_MAX_STEPS)
            wanted["max_steps"] = FALLBACK_MAX_STEPS
        return Trainer(
            accelerator="gpu" if self.device.type == "cuda" else "cpu", devices=1, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=self.context.work_dir,
            **wanted,
        )

    def predict(self, images: Sequence[np.ndarray]) -> Prediction:
        """Raw anomalib scores `(B,)` and maps `(B, h, w)` at the model's input resolution."""
        if not self.fitted:  # anomalib's own error would be a tensor-shape mismatch deep in the model
            raise RuntimeError(f"{self.meta.name}: call fit before predict")
        batch = self.to_batch(images)
        self.module.model.eval()
        with torch.inference_mode():
            out = self.module.model(batch.image.to(self.device))
        scores = out.pred_score.reshape(len(images)).float().cpu().numpy().astype(np.float64)
        maps = None
        if out.anomaly_map is not None:
            maps = out.anomaly_map.reshape(len(images), *out.anomaly_map.shape[-2:]).float().cpu().numpy()
        return Prediction(scores=scores, maps=maps)


def _on_device(batch: ImageBatch, device: torch.device) -> ImageBatch:
    return dataclasses.replace(batch, image=batch.image.to(device), gt_mask=batch.gt_mask.to(device),
                               gt_label=batch.gt_label.to(device))


def _image_tensor(image: np.ndarray) -> tv_tensors.Image:
    """RGB uint8 `(H, W, 3)` -> float `(3, H, W)` in [0, 1], as anomalib's datasets deliver images."""
    return tv_tensors.Image(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0)


@functools.cache
def anomalib_method(model_name: str) -> type[AnomalibBaseline]:
    """The `Baseline` class running anomalib image model `model_name`, registered as `anomalib:<model_name>`.

    Repeated calls return the same class. Raises ValueError for names that are not anomalib
    image models.
    """
    name = f"{PREFIX}{model_name}"
    model_class = getattr(anomalib.models, model_name, None)
    if not (isinstance(model_class, type) and issubclass(model_class, AnomalibModule)
            and ".image." in model_class.__module__):
        known = sorted(n for n, c in vars(anomalib.models).items()
                       if isinstance(c, type) and issubclass(c, AnomalibModule) and ".image." in c.__module__)
        raise ValueError(f"{model_name!r} is not an anomalib image model; known: {', '.join(known)}")
    cls = type(f"Anomalib{model_name}", (AnomalibBaseline,), {
        "__doc__": f"anomalib's {model_name} through the generic adapter (see module docstring).",
        "__module__": __name__,
        "model_class": model_class,
        "meta": _meta(name, model_class),
    })
    return cls


def _timm_specs(backbone: str) -> tuple[WeightSpec, ...]:
    """The resolver spec of a timm backbone name, or none when it is not one with hub weights."""
    try:
        return (timm_weight_spec(backbone),)
    except (ValueError, RuntimeError):
        return ()


def _meta(name: str, model_class: type[AnomalibModule]) -> MethodMeta:
    params = inspect.signature(model_class.__init__).parameters
    backbone = next((str(params[p].default) for p in ("backbone", "encoder_name", "teacher_backbone")
                     if p in params and isinstance(params[p].default, str)), "see anomalib")
    sizes = [getattr(t, "size", None) for t in getattr(model_class.configure_pre_processor().transform, "transforms", [])]
    size = [s for s in sizes if s is not None]
    summary = (model_class.__doc__ or "").strip().splitlines()
    return MethodMeta(
        name=name,
        paper=summary[0] if summary else f"anomalib {model_class.__name__}",
        backbone=backbone,
        weights_id="resolved at run time (see the result's weights stamp)",
        input_size=int(size[-1][0]) if size else 0,
        variants={
            "default": VariantSpec(Protocol.FULL_SHOT, description="all normal training images"),
            **{f"k{k}": VariantSpec(Protocol.FEW_SHOT, shots=k) for k in (1, 4, 16)},
        },
        license="Apache-2.0 (anomalib); model-specific licences upstream",
        notes=f"{model_class.__module__}.{model_class.__name__}, anomalib {anomalib.__version__}",
        options=AnomalibOptions,
        weight_specs=(*_timm_specs(backbone), MOBILENETV2_IN1K),
    )


@contextmanager
def backbones_through_resolver(resolver: WeightsResolver,
                               decided: Mapping[str, ResolvedWeights] | None = None) -> Iterator[None]:
    """While active, pretrained timm / torchvision backbones are resolved by `resolver`, never downloaded.

    `decided` holds timm names already resolved by the caller (not resolved twice); a decided
    substitute loads the bundled MobileNetV2's weights under its timm keys.
    """
    decided = dict(decided or {})
    real_create = timm.create_model
    real_get_weights = torchvision.models.get_model_weights
    real_builders: dict[str, Callable[..., nn.Module]] = {}

    def create_model(model_name: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
        if not pretrained:
            return real_create(model_name, pretrained=False, **kwargs)
        resolved = decided.get(model_name) or resolver.resolve(timm_weight_spec(model_name))
        if resolved.mode == "random":
            return real_create(model_name, pretrained=False, **kwargs)
        assert resolved.path is not None
        state = load_state_dict(resolved.path)
        # timm applies its own key filters and head/stem adaptation to a passed-in state dict.
        overlay = {**(kwargs.pop("pretrained_cfg_overlay", None) or {}),
                   "state_dict": timm_state_dict(state) if is_substitute(resolved) else state}
        return real_create(model_name, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)

    def get_model_weights(name: Any) -> Any:
        if isinstance(name, str):
            builder = real_builders.setdefault(name, getattr(torchvision.models, name))
            setattr(torchvision.models, name, functools.partial(_torchvision_backbone, builder, name, resolver))
        return SimpleNamespace(DEFAULT=None)

    timm.create_model = create_model
    torchvision.models.get_model_weights = get_model_weights
    try:
        yield
    finally:
        timm.create_model = real_create
        torchvision.models.get_model_weights = real_get_weights
        for name, builder in real_builders.items():
            setattr(torchvision.models, name, builder)


def _torchvision_backbone(builder: Callable[..., nn.Module], name: str, resolver: WeightsResolver,
                          weights: object = None, **kwargs: Any) -> nn.Module:
    """Build torchvision model `name` randomly initialised, then load its resolved DEFAULT weights."""
    model = builder(weights=None, **kwargs)
    spec = WeightSpec(key=name, library="torchvision", model_id=f"torchvision.models.{name} (DEFAULT weights)",
                      how_to_provide="torchvision keeps these in the torch hub cache (~/.cache/torch/hub/checkpoints).")
    resolved = resolver.resolve(spec)
    if resolved.mode == "pretrained":
        assert resolved.path is not None
        load_backbone_weights(model, load_state_dict(resolved.path), name)
    return model


# Built on demand (`--methods anomalib:Padim`), not at import: `run --all` runs the suite's own
# methods and plugins, not every anomalib model.
ANOMALIB_FAMILY = MethodFamily(
    prefix=PREFIX.rstrip(":"),
    build=anomalib_method,
    example="Padim",
    example_tiny=TinySetup("default", {
        "batch_size": 4,
        "model_kwargs": {"backbone": "resnet18", "layers": ["layer1", "layer2"], "n_features": 32},
        "pre_processor_kwargs": {"image_size": [64, 64]},
    }),
    description="any anomalib image model through the generic adapter, e.g. anomalib:Padim, anomalib:Dinomaly "
    "(see baselines/anomalib_adapter.py)",
)
