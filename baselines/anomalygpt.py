"""AnomalyGPT-style prompting (Gu et al., AAAI 2024): text-aligned patch maps and templated answers.

A frozen open_clip ViT gives patch tokens at 4 evenly spaced depths (CLS dropped). Per depth a
trained Linear(width -> text dim) maps tokens into text space, where softmax(100 * cos) against
the normal / abnormal prompt prototypes gives an abnormal probability; the depths' maps are
averaged into M. With k normal shots, M is instead 1 - max cosine to the shots' raw tokens,
averaged over depths. Image score = max(M). The answer is AnomalyGPT's sentence, with the
3x3 grid location of argmax(M), or an OpenAI-compatible chat model's answer (`chat_backend`).

Variants: `k1` / `k4` (few-shot: memory of 1 / 4 normal shots; the few-shot map replaces the
text map at test time, as in the paper, so these are training-free unless
`fewshot_map="mean"`) and `unsupervised` (every normal training image trains the decoder on
synthetic anomalies; the paper's unsupervised setting).

Deviations from the paper, all deliberate:
- Encoder: open_clip `ViT-B-16` / `laion2b_s34b_b88k` at 224 px (14x14 tokens, blocks 3, 6, 9,
  12) instead of ImageBind-Huge (blocks 8, 16, 24, 32). Non-square images are squashed to
  224x224; the 3x3 grid is therefore in image-relative thirds.
- No LLM and no prompt learner: the answer comes from a template (our addition, labelled
  `answer_source="template"`) or from an external chat model given the decoder's evidence.
  The Yes/No needs a threshold on max(M): F1-optimal on `val` when it is given (the harness's
  `choose_threshold`), otherwise F1-optimal on synthetic anomalies of the training normals vs.
  jittered copies of them (`threshold_source="synthetic"`, optimistic for `unsupervised`).
- The paper replaces the text map by a 1-shot map with probability 0.5 during training. That
  map has no parameters, and the reference code puts the focal + dice loss on the per-depth
  text maps before the swap, so the swap only changes what its prompt learner sees. With no
  prompt learner it would only skip updates, so every step here trains on the text maps.
- Decoder training uses a fixed pool of synthetic anomalies (CutPaste + Poisson, 1-2 patches,
  soft masks; `anomalygpt_synth`) whose frozen features are computed once and cached, instead
  of fresh anomalies each step. Few-shot memory uses no rotation augmentation.
- The few-shot map can be averaged with the text map (`fewshot_map="mean"`, the alternative left
  commented out in the reference code); the default replaces it.

Typed answers: `Prediction.decisions` (yes / no from the answer; None when the chat model
failed, its text is then the template's) and `Prediction.locations` (the grid word of argmax M).
Per-image `Prediction.extra` columns: `answer_source` ("template" | "chat" | "chat-failed"),
`answer_location` (the grid word the answer states), and `chat_error` when a chat backend is
configured.

Weights: `benchmarks.plugins.weights` resolves the open_clip checkpoint (explicit dir, HF / open_clip
caches); open_clip loads the file strictly (safetensors or `torch.load(weights_only=True)`).

Options (`context.options`): `model`, `pretrained` (open_clip name and tag), `model_overrides`
(open_clip `create_model` kwargs, e.g. a tiny `vision_cfg` for tests; weights then resolve under
a key with a hash of them), `batch_size` (inference), `fewshot_map` ("replace" | "mean"), `chat`
("auto": use the backend when BENCHMARKS_CHAT_BASE_URL is set, "off", "on": required),
and the training schedule fields of `TrainSchedule` (`epochs`, `anomalous_images`,
`normal_images`, `train_batch_size`, `lr`, `calibration_images`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from baselines.anomalygpt_synth import cutpaste_poisson, jitter
from baselines.chat_backend import ChatBackend, ChatConfig
from baselines.common import (
    CLIP_MEAN,
    CLIP_STD,
    batches,
    frozen_module_state,
    images_to_tensor,
    restore_frozen_module,
)
from baselines.neighbours import NearestNeighbourIndex
from benchmarks.api import (
    GRID,
    Baseline,
    FittedState,
    MapPooling,
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
    choose_threshold,
    grid_location,
    options_from_mapping,
    use_gemm_path,
    weights_fingerprint,
)

DEFAULT_MODEL = "ViT-B-16"
DEFAULT_TAG = "laion2b_s34b_b88k"
NORMAL_STATES = ("{}", "flawless {}", "perfect {}", "unblemished {}", "{} without flaw", "{} without defect",
                 "{} without damage")
ABNORMAL_STATES = ("damaged {}", "broken {}", "{} with flaw", "{} with defect", "{} with damage")
TEMPLATES = ("a photo of a {}.", "a photo of the {}.")
NO_ANSWER = "No, there is no anomaly in the image."
YES_ANSWER = "Yes, there is an anomaly in the image, at the {} of the image."
LOGIT_SCALE = 100.0


@dataclass(frozen=True)
class Answer:
    """One image's answer. decision: 1 / 0, or None when the chat model failed (then `text` is the
    template's). location: the grid word the answer states, None for "No" or when it states none."""

    text: str
    source: str
    decision: int | None
    location: str | None
    error: str | None = None


@dataclass(frozen=True)
class TrainSchedule:
    """Decoder training and calibration sizes for one preset.

    anomalous_images / normal_images: size of the cached training pool (training images are
    cycled for the synthetic anomalies; normals are unchanged training images).
    calibration_images: training images used for the synthetic threshold fallback (x2 views).
    The default preset costs ~270 CPU-seconds for ViT-B-16 (about half encoding the pool, half
    the decoder steps): 2-3 minutes on two free cores.
    """

    anomalous_images: int
    normal_images: int
    epochs: int
    train_batch_size: int = 16
    lr: float = 1e-3
    calibration_images: int = 16


SCHEDULES: dict[str, TrainSchedule] = {
    "smoke": TrainSchedule(anomalous_images=8, normal_images=4, epochs=4, train_batch_size=4, calibration_images=4),
    "default": TrainSchedule(anomalous_images=160, normal_images=48, epochs=20),
    "paper": TrainSchedule(anomalous_images=640, normal_images=160, epochs=50, calibration_images=64),
}
_SCHEDULE_FIELDS = tuple(f.name for f in fields(TrainSchedule))


@dataclass(frozen=True)
class AnomalyGptOptions:
    """Options of `anomalygpt` (see the module docstring); schedule fields left None keep the preset's."""

    model: str = DEFAULT_MODEL
    pretrained: str = DEFAULT_TAG
    model_overrides: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 8
    fewshot_map: Literal["replace", "mean"] = "replace"
    chat: Literal["auto", "off", "on"] = "auto"
    anomalous_images: int | None = None
    normal_images: int | None = None
    epochs: int | None = None
    train_batch_size: int | None = None
    lr: float | None = None
    calibration_images: int | None = None


def answer_text(is_anomalous: bool, location: str) -> str:
    """AnomalyGPT's answer sentence."""
    return YES_ANSWER.format(location) if is_anomalous else NO_ANSWER


def class_question(class_name: str, description: str = "") -> str:
    """AnomalyGPT's question: the class description followed by "Is there any anomaly in the image?"."""
    article = "an" if class_name[:1].lower() in "aeiou" else "a"
    subject = f"{class_name} ({description})" if description and description != class_name else class_name
    return (f"This is a photo of {article} {subject} for anomaly detection, which should be without any damage, "
            "flaw, defect, scratch, crack or broken part. Is there any anomaly in the image?")


def chat_prompt(question: str, score: float, threshold: float, location: str) -> str:
    """The question plus the decoder's evidence and the answer form the parser expects."""
    words = ", ".join(word for row in GRID for word in row)
    return (f"{question}\nEvidence from an anomaly detector: anomaly score {score:.3f} (it flags images "
            f"scoring {threshold:.3f} or more); strongest response at the {location} of the image.\n"
            f'Answer in one sentence: either "{NO_ANSWER}" or "{YES_ANSWER.format("<location>")}" '
            f"with <location> one of: {words}.")


def prompt_ensemble(class_name: str) -> tuple[list[str], list[str]]:
    """(normal, abnormal) prompts: 7 and 5 state words x 2 templates."""
    def expand(states: Sequence[str]) -> list[str]:
        return [template.format(state.format(class_name)) for state in states for template in TEMPLATES]

    return expand(NORMAL_STATES), expand(ABNORMAL_STATES)


def weight_spec(model: str = DEFAULT_MODEL, tag: str = DEFAULT_TAG,
                overrides: Mapping[str, Any] | None = None) -> WeightSpec:
    """Where the CLIP weights come from; an overridden architecture gets its own key."""
    key = f"open_clip_{model}_{tag}"
    hf_repo = None
    if overrides:
        digest = hashlib.sha1(json.dumps(overrides, sort_keys=True, default=str).encode()).hexdigest()[:8]
        key = f"open_clip_{model}_custom_{digest}"
    else:
        hf_repo = (open_clip.get_pretrained_cfg(model, tag) or {}).get("hf_hub", "").strip("/") or None
    return WeightSpec(
        key=key.replace("/", "-"), library="open_clip", model_id=model, hf_repo=hf_repo, tag=tag,
        filenames=("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),
        how_to_provide=f"open_clip: create_model('{model}', pretrained='{tag}') caches it when online.",
    )


def depth_indices(n_blocks: int, n_depths: int = 4) -> list[int]:
    """Evenly spaced block indices ending at the last block: 12 -> [2, 5, 8, 11], 32 -> [7, 15, 23, 31]."""
    return sorted({max(0, round(n_blocks * (i + 1) / n_depths) - 1) for i in range(n_depths)})


def focal_dice_loss(prob: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal (gamma 2) + dice loss of abnormal probabilities `(B, H, W)` against soft targets in [0, 1].

    For binary targets the focal term equals the reference's two-class FocalLoss on softmax output.
    """
    p = prob.clamp(1e-6, 1.0 - 1e-6)
    focal = -(target * (1 - p) ** gamma * p.log() + (1 - target) * p**gamma * (1 - p).log()).mean()
    flat_p, flat_t = prob.flatten(1), target.flatten(1)
    dice = 1 - ((2 * (flat_p * flat_t).sum(1) + 1) / (flat_p.sum(1) + flat_t.sum(1) + 1)).mean()
    return focal + dice


class ImageDecoder(nn.Module):
    """Per-depth Linear(width -> text dim) heads scoring patch tokens against the text prototypes."""

    def __init__(self, width: int, embed_dim: int, n_depths: int) -> None:
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(width, embed_dim) for _ in range(n_depths))

    def forward(self, tokens: Sequence[torch.Tensor], prototypes: torch.Tensor,
                grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        """Depths x `(B, h*w, width)` tokens, `(2, E)` prototypes -> abnormal probabilities `(D, B, H, W)`."""
        # softmax over (normal, abnormal)[1] is sigmoid(abnormal - normal), and bilinear upsampling
        # is linear, so the logit difference is upsampled alone: the same map, half the upsampling.
        direction = prototypes[1] - prototypes[0]
        margins = []
        for head, depth_tokens in zip(self.heads, tokens, strict=True):
            projected = F.normalize(head(depth_tokens), dim=-1)
            margins.append(LOGIT_SCALE * projected @ direction)
        margin = torch.stack(margins).reshape(-1, 1, *grid)
        margin = F.interpolate(margin, size=size, mode="bilinear", align_corners=True)
        return margin.sigmoid().reshape(len(margins), -1, *size)


ANOMALYGPT_PAPER = (
    "Gu et al., AnomalyGPT: Detecting Industrial Anomalies Using Large Vision-Language Models, AAAI 2024"
)
STAND_IN = (
    "the suite's anomalygpt is an open_clip encoder with trained decoders and template answers; the paper's"
    " numbers come from ImageBind-Huge with an LLM"
)
ANOMALYGPT_PUBLISHED = tuple(
    PublishedResult(("k1",), "mvtec", "1-shot", metric, value, ANOMALYGPT_PAPER, "few-shot results table",
                    note=note, never_comparable=STAND_IN)
    for metric, value, note in (
        ("image_auroc", 94.1, "paper: ImageBind-Huge encoder and an LLM"),
        ("pixel_auroc", 95.3, "paper: ImageBind-Huge encoder and an LLM"),
        ("decision_accuracy", 86.1, "accuracy of the LLM's Yes/No answers"),
    )
)


class AnomalyGPT(Baseline):
    """AnomalyGPT-style decoder maps, few-shot memory and Yes/No + location answers (see module doc)."""

    meta = MethodMeta(
        name="anomalygpt",
        map_pooling=MapPooling("max"),
        paper="Gu et al., AnomalyGPT: Detecting Industrial Anomalies Using Large Vision-Language Models, AAAI 2024",
        backbone=f"open_clip {DEFAULT_MODEL} (paper: ImageBind-Huge)",
        weights_id=DEFAULT_TAG,
        input_size=224,
        variants={
            "k1": VariantSpec(Protocol.FEW_SHOT, shots=1, description="1 normal shot; few-shot map"),
            "k4": VariantSpec(Protocol.FEW_SHOT, shots=4, description="4 normal shots; few-shot map"),
            "unsupervised": VariantSpec(Protocol.FULL_SHOT,
                                        description="decoder trained on synthetic anomalies of the normals (hard negatives left out)"),
        },
        default_variants=("k1", "unsupervised"),
        license="reimplementation; AnomalyGPT reference code CC BY-NC-SA 4.0; LAION CLIP weights MIT",
        notes="no LLM: template answers (or an external chat model); threshold from val, else synthetic",
        weight_specs=(weight_spec(),),
        options=AnomalyGptOptions,
        published=ANOMALYGPT_PUBLISHED,
        preset_schedule=True,  # synthesised images and epochs follow the preset (SCHEDULES)
        tiny=TinySetup("k1", {"model_overrides": {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 64, "layers": 4, "width": 32, "patch_size": 8, "head_width": 16},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
        }}),
    )

    def __init__(self, context: MethodContext) -> None:
        super().__init__(context)
        options = options_from_mapping(AnomalyGptOptions, context.options, "anomalygpt")
        self.fewshot_map = options.fewshot_map
        preset = SCHEDULES.get(context.preset.name, SCHEDULES["default"])
        self.schedule = replace(preset, **{k: getattr(options, k) for k in _SCHEDULE_FIELDS
                                           if getattr(options, k) is not None})
        self.batch_size = options.batch_size
        self.device = torch.device(context.device)
        self.chat = _chat_backend(options.chat)

        model_name, tag = options.model, options.pretrained
        overrides = dict(options.model_overrides)
        self.weights = context.weights.resolve(weight_spec(model_name, tag, overrides))
        path = str(self.weights.path) if self.weights.path is not None else None
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same random backbone for every seed: seeds vary training only
            # open_clip loads a file strictly, via safetensors or torch.load(weights_only=True).
            clip = open_clip.create_model(model_name, pretrained=path, weights_only=True, **overrides)
            torch.manual_seed(context.seed)
            self.decoder = ImageDecoder(clip.visual.transformer.width, clip.visual.output_dim, 4)
        clip.eval().requires_grad_(False)
        self.prototypes = _text_prototypes(clip, model_name, context.class_name).to(self.device)
        self.visual = clip.visual.to(self.device)
        self.decoder.to(self.device)
        self._model_key = f"{weight_spec(model_name, tag, overrides).key}|{weights_fingerprint(self.visual)}"
        use_gemm_path(self.visual, context.gemm_path)
        use_gemm_path(self.decoder, context.gemm_path)  # packed layers fall back to torch while it trains
        self.depths = depth_indices(len(self.visual.transformer.resblocks))
        if len(self.depths) != 4:
            raise ValueError(f"anomalygpt needs at least 4 transformer blocks, got {len(self.visual.transformer.resblocks)}")
        self.image_size: tuple[int, int] = tuple(self.visual.image_size)  # type: ignore[assignment]
        self.grid: tuple[int, int] = tuple(self.visual.grid_size)  # type: ignore[assignment]
        self.question = class_question(context.class_name, context.description)
        self.memory: list[NearestNeighbourIndex] | None = None
        self.memory_banks: list[torch.Tensor] | None = None
        self.threshold: float | None = None
        self.threshold_source = "none"
        self.train_losses: list[float] = []

    @property
    def uses_memory(self) -> bool:
        return self.variant.protocol is Protocol.FEW_SHOT

    @property
    def uses_text_map(self) -> bool:
        return not self.uses_memory or self.fewshot_map == "mean"

    def fit(self, train: Sequence[Sample], val: Sequence[Sample] | None = None) -> None:
        """Few-shot: memory of the shots. Text map in use: train the decoder. Then set the Yes/No threshold."""
        normals = [s.image for s in train if s.label == 0]
        if not normals:
            raise ValueError("anomalygpt needs at least one normal training image")
        if self.uses_memory:
            normals = normals[: self.variant.shots]
            with torch.inference_mode():
                tokens = [self._image_tokens(chunk, resize=True) for chunk in batches(normals, self.batch_size)]
            self._set_memory([torch.cat([t[d] for t in tokens]).flatten(0, 1).cpu() for d in range(4)])
        small = self._resize_uint8(normals)
        if self.uses_text_map:
            self.train_decoder(small)
        self._calibrate(small, val)

    def _set_memory(self, banks: list[torch.Tensor]) -> None:
        self.memory_banks = banks
        self.memory = [NearestNeighbourIndex(bank, "cosine") for bank in banks]

    def fitted_state(self) -> FittedState:
        """Decoder heads, text prototypes, few-shot memory, threshold; the image tower when random-init."""
        if self.threshold is None:
            raise RuntimeError("anomalygpt: call fit before saving")
        visual, info = frozen_module_state(self.visual, self.weights.mode, "visual.")
        tensors = {f"decoder.{k}": v for k, v in self.decoder.state_dict().items()}
        tensors["prototypes"] = self.prototypes
        tensors |= {f"memory.{d}": bank for d, bank in enumerate(self.memory_banks or [])}
        return FittedState({**tensors, **visual},
                           {**info, "threshold": self.threshold, "threshold_source": self.threshold_source})

    def load_fitted_state(self, state: FittedState) -> None:
        restore_frozen_module(self.visual, state.tensors, state.info, "visual.", "anomalygpt")
        self.decoder.load_state_dict({k[len("decoder."):]: v for k, v in state.tensors.items()
                                      if k.startswith("decoder.")})
        self.prototypes = state.tensors["prototypes"].to(self.device)
        if self.uses_memory:
            missing = [f"memory.{d}" for d in range(len(self.depths)) if f"memory.{d}" not in state.tensors]
            if missing:
                raise ValueError(f"anomalygpt {self.context.variant}: the saved state lacks its few-shot memory "
                                 f"({', '.join(missing)})")
            self._set_memory([state.tensors[f"memory.{d}"] for d in range(len(self.depths))])
        self.threshold = float(state.info["threshold"])
        self.threshold_source = str(state.info["threshold_source"])

    def predict(self, images: Sequence[np.ndarray]) -> Prediction:
        """Maps `(B, 224, 224)`, scores max(M), answers and per-image columns (see module doc)."""
        if self.threshold is None:
            raise RuntimeError("anomalygpt: call fit before predict")
        maps = self.anomaly_maps(images)
        scores = maps.reshape(len(maps), -1).max(axis=1)
        locations = [grid_location(m) for m in maps]
        answers = [self._answer(image, float(score), location)
                   for image, score, location in zip(images, scores, locations, strict=True)]
        extra: dict[str, list[object]] = {
            "answer_source": [a.source for a in answers], "answer_location": [a.location for a in answers],
        }
        if self.chat is not None:
            extra["chat_error"] = [a.error for a in answers]
        return Prediction(
            scores=scores.astype(np.float64), maps=maps, texts=[a.text for a in answers],
            decisions=[None if a.decision is None else bool(a.decision) for a in answers],
            locations=list(locations), extra=extra,
        )

    def anomaly_maps(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 images of any sizes -> anomaly maps M, float32 `(B, H, W)` at the model's input size."""
        out = []
        with torch.inference_mode():
            for chunk in batches(images, self.batch_size):
                out.append(self._map(self._image_tokens(chunk, resize=True)).cpu())
        return torch.cat(out).numpy().astype(np.float32)

    def train_decoder(self, small: np.ndarray) -> None:
        """Train the decoder on a cached pool of synthetic anomalies of `(N, H, W, 3)` normals.

        Loss: sum over depths of focal + dice on that depth's map (as the reference code);
        Adam. Mean loss per epoch goes to `self.train_losses`.
        """
        schedule = self.schedule
        rng = np.random.default_rng(self.context.seed)
        order = rng.permutation(len(small))
        pool, masks = [], []
        for i in range(schedule.anomalous_images):
            image, mask = cutpaste_poisson(small[order[i % len(small)]], rng)
            pool.append(image)
            masks.append(mask)
        for i in range(min(schedule.normal_images, len(small))):
            pool.append(small[order[i]])
            masks.append(np.zeros(self.image_size, dtype=np.float32))
        with torch.no_grad():
            chunks = [[t.half() for t in self._image_tokens(c, resize=False)] for c in batches(pool, self.batch_size)]
        features = [torch.cat([c[d] for c in chunks]) for d in range(4)]
        targets = torch.from_numpy(np.stack(masks)).to(self.device)
        generator = torch.Generator().manual_seed(self.context.seed)
        optimizer = torch.optim.Adam(self.decoder.parameters(), lr=schedule.lr)
        self.decoder.train()
        for _ in range(schedule.epochs):
            total = 0.0
            permutation = torch.randperm(len(pool), generator=generator)
            for index in permutation.split(schedule.train_batch_size):
                index = index.to(self.device)
                probs = self.decoder([f[index].float() for f in features], self.prototypes, self.grid, self.image_size)
                loss = sum((focal_dice_loss(p, targets[index]) for p in probs), torch.zeros((), device=self.device))
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(index)
            self.train_losses.append(total / len(pool))
        self.decoder.eval()

    def _answer(self, image: np.ndarray, score: float, location: str) -> Answer:
        """The template answer, or the chat model's when a backend is configured and its reply parses."""
        assert self.threshold is not None
        flagged = score >= self.threshold
        template = Answer(answer_text(flagged, location), "template", int(flagged), location if flagged else None)
        if self.chat is None:
            return template
        reply = self.chat.ask(image, chat_prompt(self.question, score, self.threshold, location))
        if reply.is_anomalous is None:
            return replace(template, source="chat-failed", decision=None, location=None, error=reply.error)
        return Answer(reply.text or template.text, "chat", int(reply.is_anomalous), reply.location)

    def _calibrate(self, small: np.ndarray, val: Sequence[Sample] | None) -> None:
        """Yes/No threshold: F1-optimal on val when usable, else on synthetic anomalies vs jittered normals."""
        if val:
            chosen = choose_threshold(self.anomaly_maps([s.image for s in val]).reshape(len(val), -1).max(1),
                                      np.array([s.label for s in val], dtype=int))
            if chosen.value is not None:
                self.threshold, self.threshold_source = chosen.value, chosen.source
                return
        rng = np.random.default_rng(self.context.seed + 1)
        picks = rng.permutation(len(small))[: self.schedule.calibration_images]
        normal_views = [jitter(small[i], rng) for i in picks]
        anomalous_views = [cutpaste_poisson(view, rng)[0] for view in normal_views]
        scores = self.anomaly_maps(normal_views + anomalous_views).reshape(2 * len(picks), -1).max(1)
        chosen = choose_threshold(scores, np.repeat([0, 1], len(picks)))
        self.threshold, self.threshold_source = float(chosen.value or 0.0), "synthetic"

    def _image_tokens(self, images: Sequence[np.ndarray], resize: bool) -> list[torch.Tensor]:
        """4 x `(B, h*w, width)` tokens of RGB images, through the shared feature cache when there is one.

        resize: images of any size go through `_preprocess`; False: they are already `(H, W, 3)`
        uint8 at the input size (`_normalise`). The cache key holds the model, its weights'
        fingerprint and that choice.
        """

        def compute(todo: Sequence[np.ndarray]) -> list[torch.Tensor]:
            return self._tokens(self._preprocess(todo) if resize else self._normalise(np.stack(todo)))

        cache = self.context.feature_cache
        if cache is None:
            return compute(images)
        namespace = f"anomalygpt|{self._model_key}|{'resize' if resize else 'exact'}"
        stacked = cache.map(namespace, images, lambda todo: torch.stack(compute(todo), dim=1).cpu())
        return list(stacked.to(self.device).unbind(dim=1))

    def reference_model(self) -> ReferenceModel | None:
        """open_clip's ViT `forward_intermediates` alone (backbone only: decoder, memory and answer are the method's)."""
        if self.threshold is None:
            return None
        return ReferenceModel("open_clip VisionTransformer.forward_intermediates", self._preprocess, self._tokens,
                              scope="backbone only")

    def _tokens(self, x: torch.Tensor) -> list[torch.Tensor]:
        """`(B, 3, H, W)` normalised images -> 4 x `(B, h*w, width)` raw block outputs, CLS dropped."""
        out = self.visual.forward_intermediates(x, indices=self.depths, stop_early=True,
                                                intermediates_only=True, output_fmt="NLC")
        return list(out["image_intermediates"])

    def _map(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        """4 x `(B, h*w, width)` tokens -> M `(B, H, W)`: text map, few-shot map, or their mean."""
        maps = []
        if self.uses_text_map:
            maps.append(self.decoder(tokens, self.prototypes, self.grid, self.image_size).mean(dim=0))
        if self.uses_memory:
            maps.append(self._fewshot_map(tokens))
        return torch.stack(maps).mean(dim=0)

    def _fewshot_map(self, tokens: list[torch.Tensor]) -> torch.Tensor:
        """1 - max cosine to the memory's tokens per depth, averaged over depths, upsampled: `(B, H, W)`."""
        assert self.memory is not None
        batch = tokens[0].shape[0]
        dists = [bank.search(t.flatten(0, 1), k=1)[:, 0] for bank, t in zip(self.memory, tokens, strict=True)]
        distance = torch.from_numpy(np.mean(dists, axis=0)).clamp_(min=0.0).reshape(batch, 1, *self.grid)
        distance = F.interpolate(distance.to(self.device), size=self.image_size, mode="bilinear", align_corners=True)
        return distance[:, 0]

    def _preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 images of any sizes -> CLIP-normalised `(B, 3, H, W)` at the input size, on the device."""
        return images_to_tensor(images, self.image_size, CLIP_MEAN, CLIP_STD).to(self.device)

    def _resize_uint8(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Images of any sizes -> `(N, H, W, 3)` uint8 at the model's input size (bicubic, antialiased)."""
        resized = images_to_tensor(images, self.image_size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        return (resized.permute(0, 2, 3, 1).numpy() * 255.0).round().astype(np.uint8)

    def _normalise(self, images: np.ndarray) -> torch.Tensor:
        """`(N, H, W, 3)` uint8 at input size -> CLIP-normalised `(N, 3, H, W)` on the device."""
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
        mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        return ((x - mean) / std).to(self.device)


def _text_prototypes(clip: nn.Module, model_name: str, class_name: str) -> torch.Tensor:
    """`(2, E)` normalised [normal, abnormal] prototypes: mean of each state's normalised prompt embeddings."""
    tokenizer = open_clip.get_tokenizer(model_name, context_length=clip.context_length)
    prototypes = []
    with torch.inference_mode():
        for prompts in prompt_ensemble(class_name):
            embedded = clip.encode_text(tokenizer(prompts), normalize=True)
            prototypes.append(F.normalize(embedded.mean(dim=0), dim=0))
    return torch.stack(prototypes).clone()


def _chat_backend(mode: str) -> ChatBackend | None:
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"anomalygpt: chat must be 'auto', 'on' or 'off', got {mode!r}")
    config = None if mode == "off" else ChatConfig.from_env()
    if mode == "on" and config is None:
        raise ValueError("anomalygpt: chat='on' but BENCHMARKS_CHAT_BASE_URL is not set")
    return ChatBackend(config) if config is not None else None
