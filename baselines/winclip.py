"""WinCLIP / WinCLIP+ (Jeong et al., CVPR 2023) as the `winclip` method: anomalib's model behind our contract.

The scoring is anomalib's `WinClipModel`; this module builds its open_clip model from our weights
resolver instead of open_clip's downloader, feeds it RGB arrays, and fixes one anomalib bug: the
window embeddings (see `ResolvedWinClipModel._get_window_embeddings`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import open_clip
import torch
from anomalib.models.image.winclip import torch_model as anomalib_winclip
from anomalib.models.image.winclip.torch_model import WinClipModel

from baselines.common import (
    CLIP_MEAN,
    CLIP_STD,
    batches,
    frozen_module_state,
    images_to_tensor,
    restore_frozen_module,
)
from benchmarks.api import (
    Baseline,
    FittedState,
    MethodContext,
    MethodMeta,
    Prediction,
    Protocol,
    PublishedResult,
    ReferenceModel,
    Sample,
    TinySetup,
    VariantSpec,
    WeightSpec,
    WeightsResolver,
    options_from_mapping,
    use_gemm_path,
)

log = logging.getLogger(__name__)

BACKBONE = anomalib_winclip.BACKBONE  # "ViT-B-16-plus-240"
PRETRAINED_TAG = anomalib_winclip.PRETRAINED  # "laion400m_e31"
OPEN_CLIP_FILENAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
WINCLIP_WEIGHTS = WeightSpec(
    key="vit_b_16_plus_240.laion400m_e31",
    library="open_clip",
    model_id=BACKBONE,
    # open_clip's own registry entry for this tag (open_clip.get_pretrained_cfg(...)["hf_hub"])
    hf_repo="timm/vit_base_patch16_plus_clip_240.laion400m_e31",
    filenames=OPEN_CLIP_FILENAMES,
    tag=PRETRAINED_TAG,
)


@dataclass(frozen=True)
class WinClipOptions:
    """Overrides read from `MethodContext.options`.

    model_name / pretrained: open_clip architecture and pretrained tag (weights located by the
        resolver through open_clip's registry entry for that tag).
    model_overrides: keyword overrides of the open_clip model config (`embed_dim`, `vision_cfg`,
        `text_cfg`); tests build a tiny CLIP with these. Pretrained weights only fit the
        unchanged architecture. The input size is the model's `vision_cfg.image_size`.
    scales: window sizes in patches (paper: 2 and 3). batch_size: images per forward pass; by
        default 1 on a CPU and 8 on a GPU. On the 2-core AMD EPYC of docs/performance.md, one capture per
        pass ran 3.30 s per image, 2 per pass 3.47 s, 4 and 8 per pass 3.71-3.72 s: a batch of 8
        puts 13,520 window tokens through each block, and the activations no longer fit the caches.
    """

    model_name: str = BACKBONE
    pretrained: str = PRETRAINED_TAG
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    scales: tuple[int, ...] = (2, 3)
    batch_size: int | None = None

    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> WinClipOptions:
        return options_from_mapping(cls, options, "winclip")


def weight_spec(model_name: str, tag: str) -> WeightSpec:
    """The resolver entry for an open_clip model and pretrained tag (from open_clip's registry)."""
    if (model_name, tag) == (BACKBONE, PRETRAINED_TAG):
        return WINCLIP_WEIGHTS
    hf_hub = (open_clip.get_pretrained_cfg(model_name, tag) or {}).get("hf_hub") or ""
    return WeightSpec(key=f"{model_name}.{tag}", library="open_clip", model_id=model_name,
                      hf_repo=hf_hub.strip("/") or None, filenames=OPEN_CLIP_FILENAMES, tag=tag)


def build_clip(options: WinClipOptions, resolver: WeightsResolver) -> tuple[torch.nn.Module, Callable]:
    """An open_clip model (random init, then the resolver's weights if any) and its eval transform.

    `open_clip.load_checkpoint` reads safetensors, or `.bin`/`.pt` with `torch.load(weights_only=True)`.
    """
    clip, _, preprocess = open_clip.create_model_and_transforms(
        options.model_name, pretrained=None, **options.model_overrides
    )
    resolved = resolver.resolve(weight_spec(options.model_name, options.pretrained))
    if resolved.path is not None:
        open_clip.load_checkpoint(clip, str(resolved.path))
    return clip.eval().requires_grad_(False), preprocess


@contextmanager
def _anomalib_uses(clip: torch.nn.Module, preprocess: Callable) -> Iterator[None]:
    """While active, anomalib's `open_clip.create_model_and_transforms(...)` returns `clip`.

    `WinClipModel.__init__` hard-codes `open_clip.create_model_and_transforms(BACKBONE,
    pretrained=PRETRAINED)`, which downloads; only the `open_clip` name inside anomalib's winclip
    module is swapped, and only for the constructor call. Not thread-safe (one build at a time).
    """
    original = anomalib_winclip.open_clip
    anomalib_winclip.open_clip = SimpleNamespace(  # type: ignore[assignment]
        create_model_and_transforms=lambda *args, **kwargs: (clip, None, preprocess)
    )
    try:
        yield
    finally:
        anomalib_winclip.open_clip = original


class ResolvedWinClipModel(WinClipModel):
    """anomalib's `WinClipModel` on a CLIP model built by the caller; scoring code untouched.

    Besides the constructor hook, `_generate_masks` puts the window masks on the CLIP model's
    device, so reference images on a GPU can be encoded inside `__init__` (anomalib creates them
    on the CPU and expects a later `.to(device)`), which saves a second text-encoding pass.
    """

    def __init__(
        self,
        clip: torch.nn.Module,
        preprocess: Callable,
        class_name: str,
        reference_images: torch.Tensor | None = None,
        scales: tuple[int, ...] = (2, 3),
    ) -> None:
        with _anomalib_uses(clip, preprocess):
            super().__init__(class_name=class_name, reference_images=reference_images, scales=scales)

    def _generate_masks(self) -> list[torch.Tensor]:
        device = next(self.clip.parameters()).device
        return [mask.to(device) for mask in super()._generate_masks()]

    def _get_window_embeddings(self, feature_map: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Each window's class token + patch tokens through the rest of the vision tower, as its own sequence.

        Deviation from anomalib 2.7, a fix: anomalib permutes the tokens to (L, N, D) before
        `clip.visual.transformer`, the layout of open_clip before 2.24; open_clip's transformer now
        takes (N, L, D) whatever its attention layout (it transposes inside). With open_clip 3.x
        the windows therefore attended to each other, token position by token position, and every
        window got the same class-token embedding (the symptom of anomalib issue #2571): the
        zero-shot map was flat and WinCLIP+'s window memory useless. Here the permutation follows
        the installed transformer's contract; everything else is anomalib's code path.
        """
        n_windows, batch_size = masks.shape[1], feature_map.shape[0]
        class_index = torch.zeros(1, n_windows, dtype=masks.dtype, device=masks.device)
        windows = torch.cat((class_index, masks + 1)).T  # (n_windows, 1 + window tokens), class token first
        tokens = torch.cat([torch.index_select(feature_map, 1, window) for window in windows])
        visual = self.clip.visual
        tokens = visual.ln_pre(visual.patch_dropout(tokens))
        tokens = _transformer_forward(visual.transformer, tokens)
        pooled, _ = visual._global_pool(visual.ln_post(tokens))
        if visual.proj is not None:
            pooled = pooled @ visual.proj
        return pooled.reshape((n_windows, batch_size, -1)).permute(1, 0, 2)


def _transformer_forward(transformer: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """open_clip's vision transformer on `(N, L, D)` tokens. open_clip >= 2.24 takes them as they are
    (its transformer has `batch_first` and transposes inside when needed); older versions take (L, N, D)."""
    if hasattr(transformer, "batch_first"):
        return transformer(tokens)
    return transformer(tokens.permute(1, 0, 2)).permute(1, 0, 2)


WINCLIP_PAPER = "Jeong et al., WinCLIP: Zero-/Few-Shot Anomaly Classification and Segmentation, CVPR 2023"


def _winclip_zero_shot(kind: str, metric: str, value: float, table: str) -> PublishedResult:
    return PublishedResult(("k0",), kind, "zero-shot", metric, value, WINCLIP_PAPER, table)


WINCLIP_PUBLISHED = (
    _winclip_zero_shot("mvtec", "image_auroc", 91.8, "zero-shot classification table; abstract"),
    _winclip_zero_shot("visa", "image_auroc", 78.1, "zero-shot classification table; abstract"),
    _winclip_zero_shot("mvtec", "f1_max", 92.9, "zero-shot classification table"),
    _winclip_zero_shot("visa", "f1_max", 79.0, "zero-shot classification table"),
    _winclip_zero_shot("mvtec", "pixel_auroc", 85.1, "zero-shot segmentation table; abstract"),
    _winclip_zero_shot("visa", "pixel_auroc", 79.6, "zero-shot segmentation table; abstract"),
    *(PublishedResult((f"k{k}",), kind, f"{k}-shot (WinCLIP+)", "image_auroc", value, WINCLIP_PAPER,
                      "few-normal-shot classification table (1-shot also in the abstract)")
      for kind, values in (("mvtec", (93.1, 94.4, 95.2)), ("visa", (83.8, 84.6, 87.3)))
      for k, value in zip((1, 2, 4), values, strict=True)),
)  # fmt: skip


class WinClip(Baseline):
    """WinCLIP (zero-shot, `k0`) and WinCLIP+ (`k1`, `k2`, `k4` normal shots) via anomalib 2.7's `WinClipModel`.

    Prompts use `context.class_name` in anomalib's compositional ensemble (7 normal and 4
    anomalous states x 21 templates). Image score: softmax over cosine / 0.07 to the two class
    prototypes; windows 2x2 and 3x3 with harmonic aggregation; WinCLIP+ averages the zero-shot
    and few-shot maps and (zero-shot score + max few-shot map) / 2. Maps are returned at 240x240.

    Deviations (anomalib's, kept because the model is wrapped, not rewritten):
    - Class prototypes are the mean of the raw prompt embeddings; the paper averages normalised
      ones (cosines normalise the mean afterwards, so prompts with larger norms weigh more).
    - WinCLIP+ patch memory is the final-layer patch tokens before the projection (896-d),
      windows use projected window embeddings, association = min over memory of (1 - cos) / 2.
    Ours:
    - Images are squashed to 240x240 (bicubic, antialiased, CLIP mean/std), as anomalib's
      pre-processor does; portrait phone photos are therefore scaled anisotropically rather than
      centre-cropped, so no part of the phone is lost. Unlike anomalib's transform, resized
      values are clamped to [0, 1] before normalisation (bicubic overshoot).
    - Reference shots are the runner's seeded draw, not the first k of the training loader.
    - The CLIP weights come from our resolver (same laion400m_e31 checkpoint; `ResolvedWinClipModel`).
    """

    meta: ClassVar[MethodMeta] = MethodMeta(
        name="winclip",
        paper="Jeong et al., WinCLIP: Zero-/Few-Shot Anomaly Classification and Segmentation, CVPR 2023",
        backbone="open_clip ViT-B-16-plus-240",
        weights_id=PRETRAINED_TAG,
        input_size=240,
        variants={
            "k0": VariantSpec(Protocol.ZERO_SHOT, description="WinCLIP zero-shot (prompts only)"),
            "k1": VariantSpec(Protocol.FEW_SHOT, shots=1, description="WinCLIP+ with 1 normal shot"),
            "k2": VariantSpec(Protocol.FEW_SHOT, shots=2, description="WinCLIP+ with 2 normal shots"),
            "k4": VariantSpec(Protocol.FEW_SHOT, shots=4, description="WinCLIP+ with 4 normal shots"),
        },
        default_variants=("k0",),
        license="anomalib Apache-2.0; open_clip and laion400m weights MIT",
        notes="anomalib WinClipModel wrapped; CLIP weights via the benchmark resolver",
        weight_specs=(WINCLIP_WEIGHTS,),
        options=WinClipOptions,
        published=WINCLIP_PUBLISHED,
        tiny=TinySetup("k0", {"model_overrides": {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
        }}),
    )

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        self.options = WinClipOptions.from_mapping(context.options)
        self.device = torch.device(context.device)
        self.model: ResolvedWinClipModel | None = None
        self.input_size: tuple[int, int] = (240, 240)

    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> None:
        """Encode the prompt ensemble and, for WinCLIP+, the first `shots` normal images."""
        clip, preprocess = self._clip()
        references = None
        shots = self.variant.shots or 0
        if shots:
            normals = [s.image for s in train if s.label == 0][:shots]
            if not normals:
                raise ValueError(f"winclip {self.context.variant} needs normal training images")
            if len(normals) < shots:
                log.warning("winclip %s: %d normal images for %d shots", self.context.variant, len(normals), shots)
            references = self._to_tensor(normals)
        self._build(clip, preprocess, references)

    def _clip(self) -> tuple[torch.nn.Module, Callable]:
        """The open_clip model from the resolver, on the device; sets the input size and weights mode."""
        clip, preprocess = build_clip(self.options, self.context.weights)
        clip = clip.to(self.device)
        self.weights_mode = self.context.weights.effective_mode
        size = clip.visual.image_size
        self.input_size = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
        return clip, preprocess

    def _build(self, clip: torch.nn.Module, preprocess: Callable, references: torch.Tensor | None) -> None:
        # anomalib encodes prompts and references under its own torch.no_grad
        use_gemm_path(clip.visual, self.context.gemm_path)
        self.references = references
        self.model = ResolvedWinClipModel(
            clip, preprocess, self.context.class_name, references, self.options.scales
        ).eval()

    def fitted_state(self) -> FittedState:
        """The k normal shots (CLIP-normalised tensors; prompts are re-encoded from the class name),
        and the CLIP model itself when it is random-init."""
        if self.model is None:
            raise RuntimeError("winclip: call fit before saving")
        clip, info = frozen_module_state(self.model.clip, self.weights_mode, "clip.")
        shots = {"references": self.references.cpu()} if self.references is not None else {}
        return FittedState({**shots, **clip}, info)

    def load_fitted_state(self, state: FittedState) -> None:
        clip, preprocess = self._clip()
        restore_frozen_module(clip, state.tensors, state.info, "clip.", "winclip")
        references = state.tensors.get("references")
        self._build(clip, preprocess, None if references is None else references.to(self.device))

    def predict(self, images: Sequence[np.ndarray]) -> Prediction:
        if self.model is None:
            raise RuntimeError("winclip: call fit before predict")
        scores, maps = [], []
        with torch.inference_mode():
            for chunk in batches(images, self.options.batch_size or (1 if self.device.type == "cpu" else 8)):
                out = self.model(self._to_tensor(chunk))
                scores.append(out.pred_score.float().cpu())
                maps.append(out.anomaly_map.float().cpu())
        return Prediction(scores=torch.cat(scores).numpy(), maps=torch.cat(maps).numpy())

    def reference_model(self) -> ReferenceModel | None:
        """anomalib's `WinClipModel.forward` on the same CLIP-normalised tensor (the whole method)."""
        if self.model is None:
            return None
        return ReferenceModel("anomalib WinClipModel.forward", self._to_tensor, self.model)

    def _to_tensor(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 images -> `(B, 3, 240, 240)` CLIP-normalised batch on the method's device."""
        return images_to_tensor(images, self.input_size, CLIP_MEAN, CLIP_STD).to(self.device)
