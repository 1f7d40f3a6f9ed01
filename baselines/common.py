"""Pieces several plugins share: preprocessing, batching, faiss search, coreset, map smoothing."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

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

    Each image is resized on its own (bicubic, antialiased) to `size` (int = square).
    """
    hw = (size, size) if isinstance(size, int) else tuple(size)
    out = []
    for image in images:
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
    """Gaussian-smooth `(B, H, W)` maps with kernel size 2*round(4*sigma)+1 (reflect padding)."""
    radius = int(round(4 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    kernel = torch.exp(-(x**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    b = maps[:, None]
    pad_h = min(radius, maps.shape[-2] - 1)
    pad_w = min(radius, maps.shape[-1] - 1)
    b = F.pad(b, (pad_w, pad_w, 0, 0), mode="reflect") if pad_w > 0 else b
    b = F.conv2d(b, kernel[radius - pad_w : radius + pad_w + 1].view(1, 1, 1, -1))
    b = F.pad(b, (0, 0, pad_h, pad_h), mode="reflect") if pad_h > 0 else b
    b = F.conv2d(b, kernel[radius - pad_h : radius + pad_h + 1].view(1, 1, -1, 1))
    return b[:, 0]
