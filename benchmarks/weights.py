"""One resolver for every backbone's pretrained weights (SPEC 6).

Search order: an explicit file or weights directory, then the standard caches (Hugging Face hub
cache, torch hub checkpoints, open_clip's cache dir), then a download when the hub is reachable.
Modes: `pretrained` (fail when not found), `random` (never load), `auto` (pretrained when found,
otherwise random-init with a loud warning). Loading never unpickles code: safetensors, or
`torch.load(weights_only=True)` for legacy `.bin`/`.pth` files.
"""

from __future__ import annotations

import logging
import os
import socket
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch

log = logging.getLogger(__name__)

WeightsMode = Literal["auto", "pretrained", "random"]
WEIGHTS_MODES: tuple[str, ...] = ("auto", "pretrained", "random")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


class WeightsNotFoundError(FileNotFoundError):
    """Raised in `pretrained` mode when a backbone's weights cannot be found."""


class RandomWeightsWarning(UserWarning):
    """Emitted whenever a backbone falls back to random initialisation."""


@dataclass(frozen=True)
class WeightSpec:
    """Where one backbone's weights live.

    key: short, filesystem-safe name (`wide_resnet50_2`); also the name looked for in a
        weights directory (`DIR/<key>.safetensors` or `DIR/<key>/<file>`).
    library: "timm" | "open_clip" | "hf" (a transformers snapshot folder) | "file".
    model_id: the library's model name (timm `wide_resnet50_2.racm_in1k`, open_clip
        `ViT-B-16-plus-240`, transformers `google/siglip-so400m-patch14-384`).
    hf_repo: the Hugging Face repository holding the weights, if any.
    filenames: candidate weight files inside the repo / folder, in preference order.
    tag: the pretrained tag (open_clip `laion400m_e31`).
    """

    key: str
    library: str
    model_id: str
    hf_repo: str | None = None
    filenames: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
    tag: str | None = None
    how_to_provide: str = ""


@dataclass(frozen=True)
class ResolvedWeights:
    """Result of resolution: `path` is a file (or a snapshot folder for `hf`), or None for random."""

    spec: WeightSpec
    mode: Literal["pretrained", "random"]
    path: Path | None
    source: str

    def to_json(self) -> dict[str, object]:
        return {
            "key": self.spec.key,
            "model_id": self.spec.model_id,
            "mode": self.mode,
            "path": str(self.path) if self.path else None,
            "source": self.source,
        }


@dataclass
class WeightsResolver:
    """Resolves `WeightSpec`s for one cell and remembers what it handed out (for the stamp)."""

    mode: WeightsMode = "auto"
    weights_dir: Path | None = None
    allow_download: bool = True
    resolved: list[ResolvedWeights] = field(default_factory=list)
    _hub_reachable: bool | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in WEIGHTS_MODES:
            raise ValueError(f"weights mode must be one of {WEIGHTS_MODES}, got {self.mode!r}")
        if self.weights_dir is None and os.environ.get("BENCHMARKS_WEIGHTS_DIR"):
            self.weights_dir = Path(os.environ["BENCHMARKS_WEIGHTS_DIR"])

    @property
    def effective_mode(self) -> Literal["pretrained", "random"]:
        """`random` if any backbone resolved so far is random-init (or nothing was resolved in random mode)."""
        if self.mode == "random" or any(r.mode == "random" for r in self.resolved):
            return "random"
        return "pretrained"

    def resolve(self, spec: WeightSpec) -> ResolvedWeights:
        if self.mode == "random":
            return self._remember(ResolvedWeights(spec, "random", None, "--weights random"))
        found = self.find(spec)
        if found is not None:
            path, source = found
            return self._remember(ResolvedWeights(spec, "pretrained", path, source))
        if self.mode == "pretrained":
            raise WeightsNotFoundError(
                f"pretrained weights for {spec.key} ({spec.model_id}) not found; {provide_hint(spec)}"
            )
        message = (
            f"RANDOM WEIGHTS: no pretrained weights for {spec.key} ({spec.model_id}) could be found "
            f"offline; using random initialisation. Results will be stamped 'random'. {provide_hint(spec)}"
        )
        warnings.warn(message, RandomWeightsWarning, stacklevel=2)
        log.warning(message)
        return self._remember(ResolvedWeights(spec, "random", None, "not found (auto)"))

    def find(self, spec: WeightSpec) -> tuple[Path, str] | None:
        """Look for the weights without downloading first, then download if allowed and reachable."""
        for finder in (self._in_weights_dir, _in_hf_cache, _in_torch_hub, _in_open_clip_cache):
            hit = finder(spec)
            if hit is not None:
                return hit
        if self.allow_download and spec.hf_repo and self.hub_reachable():
            return _download(spec)
        return None

    def hub_reachable(self) -> bool:
        if self._hub_reachable is None:
            self._hub_reachable = _hub_reachable()
        return self._hub_reachable

    def _in_weights_dir(self, spec: WeightSpec) -> tuple[Path, str] | None:
        if self.weights_dir is None:
            return None
        root = Path(self.weights_dir)
        for suffix in WEIGHT_SUFFIXES:
            candidate = root / f"{spec.key}{suffix}"
            if candidate.is_file():
                return candidate, f"weights dir {root}"
        folder = root / spec.key
        if folder.is_dir():
            if spec.library == "hf" and (folder / "config.json").is_file():
                return folder, f"weights dir {root}"
            for name in spec.filenames:
                if (folder / name).is_file():
                    return folder / name, f"weights dir {root}"
        return None

    def _remember(self, resolved: ResolvedWeights) -> ResolvedWeights:
        self.resolved.append(resolved)
        return resolved

    def summary(self) -> list[dict[str, object]]:
        return [r.to_json() for r in self.resolved]


def provide_hint(spec: WeightSpec) -> str:
    where = f"Hugging Face repo {spec.hf_repo}" if spec.hf_repo else spec.model_id
    extra = f" {spec.how_to_provide}" if spec.how_to_provide else ""
    return (
        f"To run offline, put {where} in the Hugging Face cache (huggingface-cli download {spec.hf_repo}) "
        f"or place the file at $BENCHMARKS_WEIGHTS_DIR/{spec.key}.safetensors "
        f"(or a folder $BENCHMARKS_WEIGHTS_DIR/{spec.key}/).{extra}"
    )


def _in_hf_cache(spec: WeightSpec) -> tuple[Path, str] | None:
    if not spec.hf_repo:
        return None
    from huggingface_hub import try_to_load_from_cache

    names = ("config.json",) if spec.library == "hf" else spec.filenames
    for name in names:
        hit = try_to_load_from_cache(spec.hf_repo, name)
        if isinstance(hit, str) and Path(hit).is_file():
            path = Path(hit).parent if spec.library == "hf" else Path(hit)
            return path, "Hugging Face cache"
    return None


def _in_torch_hub(spec: WeightSpec) -> tuple[Path, str] | None:
    """torch hub's checkpoint folder holds torchvision-style files named `<key>-<hash>.pth`."""
    if spec.library not in ("torchvision", "file"):
        return None
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    if not checkpoints.is_dir():
        return None
    for path in sorted(checkpoints.iterdir()):
        if path.stem.startswith(spec.key) and path.suffix in WEIGHT_SUFFIXES:
            return path, "torch hub cache"
    return None


def _in_open_clip_cache(spec: WeightSpec) -> tuple[Path, str] | None:
    if spec.library != "open_clip":
        return None
    root = Path(os.environ.get("OPEN_CLIP_CACHE", Path.home() / ".cache" / "clip"))
    if not root.is_dir():
        return None
    for path in sorted(root.rglob("*")):
        if path.suffix in WEIGHT_SUFFIXES and spec.tag and spec.tag in path.name:
            return path, "open_clip cache"
    return None


def _hub_reachable(host: str = "huggingface.co", timeout: float = 2.0) -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _download(spec: WeightSpec) -> tuple[Path, str] | None:
    from huggingface_hub import hf_hub_download, snapshot_download

    assert spec.hf_repo is not None
    try:
        if spec.library == "hf":
            return Path(snapshot_download(spec.hf_repo)), "downloaded (Hugging Face)"
        for name in spec.filenames:
            try:
                return Path(hf_hub_download(spec.hf_repo, name)), "downloaded (Hugging Face)"
            except Exception:  # the next candidate file name may exist
                continue
    except Exception as exc:
        log.warning("download of %s failed: %s", spec.hf_repo, exc)
    return None


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a weight file without executing pickled code.

    `.safetensors` through safetensors; other files through `torch.load(weights_only=True)`.
    A checkpoint wrapping its weights under `state_dict` or `model` is unwrapped.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                return dict(inner)
        return dict(obj)
    raise ValueError(f"{path}: expected a state dict, found {type(obj).__name__}")


def describe(spec: WeightSpec, resolver: WeightsResolver) -> dict[str, object]:
    """Where `spec` would come from right now (for `list weights`), without downloading."""
    probe = WeightsResolver(mode="auto", weights_dir=resolver.weights_dir, allow_download=False)
    hit = probe.find(spec)
    return {
        **asdict(spec),
        "found": bool(hit),
        "path": str(hit[0]) if hit else None,
        "source": hit[1] if hit else "not found",
        "how_to_provide": provide_hint(spec),
    }
