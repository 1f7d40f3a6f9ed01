"""Image decoding: documented conversions for unusual images, clear errors for broken ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.data import images
from benchmarks.data.images import ImageDecodeError, load_image, load_mask


def test_conversions(tmp_path: Path) -> None:
    gray16 = np.full((4, 5), 65535 // 2, dtype=np.uint16)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png")
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8 and int(out[0, 0, 0]) == 127  # scaled, not clipped

    Image.fromarray(np.full((4, 5), 200, np.uint8)).save(tmp_path / "g8.png")
    assert load_image(tmp_path / "g8.png")[0, 0].tolist() == [200, 200, 200]

    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    assert load_image(tmp_path / "rgba.png")[0, 0].tolist() == [128, 0, 0]  # composited on black

    Image.fromarray(np.full((4, 5, 3), 90, np.uint8)).convert("CMYK").save(tmp_path / "cmyk.jpg")
    assert load_image(tmp_path / "cmyk.jpg").shape == (4, 5, 3)

    Image.fromarray(np.full((4, 5, 3), 90, np.uint8)).convert("P").save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape == (4, 5, 3)


def test_exif_rotation(tmp_path: Path) -> None:
    image = Image.fromarray(np.zeros((4, 8, 3), np.uint8))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise for display
    image.save(tmp_path / "rot.jpg", exif=exif)
    assert load_image(tmp_path / "rot.jpg").shape == (8, 4, 3)


def test_broken_files_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "zero.png").write_bytes(b"")
    with pytest.raises(ImageDecodeError, match="zero.png: file is empty"):
        load_image(tmp_path / "zero.png")
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(ImageDecodeError, match="text.png: not an image"):
        load_image(tmp_path / "text.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageDecodeError, match="cut.png"):
        load_image(tmp_path / "cut.png")
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(ImageDecodeError, match="pixel limit"):
        load_image(tmp_path / "full.png")


def test_mask_binarised_and_size_checked(tmp_path: Path) -> None:
    mask = np.array([[0, 127, 128, 255]], np.uint8)
    Image.fromarray(mask).save(tmp_path / "m.png")
    assert load_mask(tmp_path / "m.png").tolist() == [[False, False, True, True]]
    with pytest.raises(ImageDecodeError, match="mask is 4x1, image is 5x1"):
        load_mask(tmp_path / "m.png", (1, 5))
