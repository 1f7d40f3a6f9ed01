"""Safe, documented decoding of dataset images and masks into the arrays plugins receive.

Conversions (all deterministic):
- EXIF orientation is applied (the image is shown as a viewer would show it).
- 16-bit / 32-bit integer images are scaled by their type's range to 8 bit (not clipped).
- Grayscale, palette, CMYK and LA images are converted to RGB; RGBA is composited on black.
Refused: formats outside `ALLOWED_FORMATS` (so exotic decoders are never reached), images over
`MAX_PIXELS` (decompression bombs), and anything Pillow cannot fully decode.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageOps

ALLOWED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
MAX_PIXELS = 64_000_000
MASK_THRESHOLD = 127
"""Mask pixels strictly above this 8-bit value are defect pixels."""


class ImageDecodeError(ValueError):
    """An image or mask that cannot be used; the message names the file."""


def _open(path: Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise ImageDecodeError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ImageDecodeError(f"{path}: file is empty (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(path, formats=ALLOWED_FORMATS)
            if image.width * image.height > MAX_PIXELS:
                raise ImageDecodeError(
                    f"{path}: {image.width}x{image.height} exceeds the pixel limit of {MAX_PIXELS:,}"
                )
            image.load()
        except ImageDecodeError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageDecodeError(f"{path}: refused as a possible decompression bomb ({exc})") from None
        except Image.UnidentifiedImageError:
            raise ImageDecodeError(
                f"{path}: not an image in an allowed format ({', '.join(ALLOWED_FORMATS)})"
            ) from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageDecodeError(f"{path}: cannot be decoded ({exc})") from None
    return image


def load_image(path: Path) -> np.ndarray:
    """Decode `path` to RGB uint8 `(H, W, 3)` following the module's conversion rules."""
    image = _open(path)
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        array = np.asarray(image, dtype=np.float64) / 65535.0
        gray = np.round(array * 255.0).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "I":
        array = np.asarray(image, dtype=np.float64)
        scale = 65535.0 if array.max(initial=0) <= 65535 else float(2**32 - 1)
        gray = np.round(np.clip(array, 0, None) / scale * 255.0).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        lo, hi = float(array.min(initial=0)), float(array.max(initial=1))
        gray = np.round((array - lo) / max(hi - lo, 1e-12) * 255.0).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, rgba)
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def load_mask(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a mask to bool `(H, W)`: any channel > MASK_THRESHOLD after conversion to 8-bit.

    `size` is the image's (H, W); a mask of another size is rejected.
    """
    mask = load_image(path).max(axis=2) > MASK_THRESHOLD
    if size is not None and mask.shape != tuple(size):
        raise ImageDecodeError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, image is {size[1]}x{size[0]}"
        )
    return mask


def verify_image(path: Path) -> None:
    """Decode `path` in full (pixels, not only the header) or raise `ImageDecodeError` saying why."""
    _open(path).close()


QUARTER_TURNS = (5, 6, 7, 8)
"""EXIF orientations that `load_image` turns by 90 degrees (its height and width swap)."""


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of `path` as `load_image`/`load_mask` return it, from the header only (no full
    decode): the stored size, swapped where the EXIF orientation is a quarter turn. EXIF written
    after a PNG's pixel data is only seen by a full decode; `load_mask` still names such a file."""
    with Image.open(path, formats=ALLOWED_FORMATS) as image:
        width, height = image.size
        orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    return (width, height) if orientation in QUARTER_TURNS else (height, width)
