"""Pieces several plugins share: preprocessing, batching, faiss search, coreset, map smoothing."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from benchmarks.api import weights_fingerprint

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def images_to_tensor(
    images: Sequence[np.ndarray],
    size: int | tuple[int, int],
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    mode: str = "bicubic",
) -> torch.Tensor:
    """RGB uint8 `(H, W, 3)` images of any sizes -> normalised float `(B, 3, h, w)`.

    Each image is resized on its own to `size` (int = square): `mode` "bicubic" / "bilinear" are
    torch's antialiased tensor resizes; "pil-bicubic" is PIL's bicubic on the 8-bit image, what
    torchvision's `Resize` does to a PIL image (reference code that loads images with PIL).
    """
    hw = (size, size) if isinstance(size, int) else tuple(size)
    out = []
    for image in images:
        if mode == "pil-bicubic" and image.shape[:2] != hw:
            image = np.array(Image.fromarray(np.ascontiguousarray(image)).resize((hw[1], hw[0]), Image.Resampling.BICUBIC))
        t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255.0
        if t.shape[-2:] != hw:
            t = F.interpolate(t, size=hw, mode=mode, align_corners=False, antialias=True)
        out.append(t.clamp_(0.0, 1.0))
    batch = torch.cat(out)
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (batch - m) / s


def batches(items: Sequence, batch_size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), batch_size):
        yield items[start : start + batch_size]


def gaussian_blur_maps(maps: torch.Tensor, sigma: float = 4.0) -> torch.Tensor:
    """Gaussian-smooth `(B, H, W)` maps as `scipy.ndimage.gaussian_filter(m, sigma)` does, which the
    PatchCore and AnomalyDINO reference code call: radius `int(4 * sigma + 0.5)`, borders extended by
    half-sample symmetric reflection (scipy's default "reflect": `d c b a | a b c d`). A map narrower
    than the radius is extended by its own width only (the kernel is truncated there)."""
    radius = int(4 * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    b = maps[:, None]
    for dim, view in ((-1, (1, 1, 1, -1)), (-2, (1, 1, -1, 1))):
        pad = min(radius, b.shape[dim])
        if pad > 0:
            b = torch.cat([b.narrow(dim, 0, pad).flip(dim), b, b.narrow(dim, b.shape[dim] - pad, pad).flip(dim)], dim)
        b = F.conv2d(b, kernel[radius - pad : radius + pad + 1].view(*view))
    return b[:, 0]


def frozen_module_state(module: torch.nn.Module, weights_mode: str, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A frozen backbone's share of a `FittedState`: its tensors when its weights are random (they
    exist nowhere else), none otherwise (the resolver finds the file again); always a fingerprint."""
    # cloned: a module may hold one tensor under two names (anomalib's extractor keeps `backbone` and
    # `feature_extractor`), which safetensors refuses to write as shared memory
    tensors = ({f"{prefix}{k}": v.detach().cpu().clone() for k, v in module.state_dict().items()}
               if weights_mode == "random" else {})
    return tensors, {f"{prefix}fingerprint": weights_fingerprint(module)}


def restore_frozen_module(module: torch.nn.Module, tensors: Mapping[str, torch.Tensor], info: Mapping[str, object],
                          prefix: str, what: str) -> None:
    """Load the saved random tensors of `module` (if any), then insist it is the backbone the model was fitted on."""
    saved = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
    if saved:
        module.load_state_dict(saved, strict=True)
    expected = info.get(f"{prefix}fingerprint")
    if expected is not None and weights_fingerprint(module) != expected:
        raise ValueError(f"{what}: this machine resolves different backbone weights from the ones the model was "
                         f"fitted on (fingerprint {weights_fingerprint(module)}, saved {expected}); provide the "
                         "same weight files (see the model's weights detail)")
