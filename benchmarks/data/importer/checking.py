"""Every file of an import decoded before anything is written: image content hashes and mask states."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from benchmarks.data.images import MASK_THRESHOLD, ImageDecodeError, image_size, load_image, verify_image
from benchmarks.data.importer.items import Item

CHECK_THREADS = 4


@dataclass(frozen=True)
class Checked:
    sha256: str
    mask_state: str | None  # "keep", "rescale" (all defect pixels <= MASK_THRESHOLD) or "empty"


def check(item: Item) -> Checked:
    """Decode the image in full and its mask; the mask must have the image's size as `load_image` shows it."""
    verify_image(item.image)
    digest = hashlib.sha256(item.image.read_bytes()).hexdigest()
    if item.mask is None:
        return Checked(digest, None)
    pixels = load_image(item.mask).max(axis=2)
    height, width = image_size(item.image)
    if pixels.shape != (height, width):
        raise ValueError(f"mask {item.mask} is {pixels.shape[1]}x{pixels.shape[0]} but its image {item.image} "
                         f"is {width}x{height} (as the loader shows it, EXIF orientation applied)")
    top = int(pixels.max())
    return Checked(digest, "keep" if top > MASK_THRESHOLD else "rescale" if top > 0 else "empty")


def check_all(items: list[Item]) -> list[Checked]:
    def safe(item: Item) -> Checked | str:
        try:
            return check(item)
        except (ImageDecodeError, ValueError, OSError) as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=CHECK_THREADS) as pool:
        results = list(pool.map(safe, items))
    errors = [r for r in results if isinstance(r, str)]
    if errors:
        more = f" (and {len(errors) - 1} more unusable file(s))" if len(errors) > 1 else ""
        raise ValueError(f"{errors[0]}{more}")
    return [r for r in results if isinstance(r, Checked)]

