"""A procedurally made phone study laid out as researchers publish one, for `data import` tests and the
walkthrough in docs/data-import.md:

    STUDY/photos/<model>/*.jpg  + <model>_ann.json   real captures; defects as COCO polygons (an image
                                                     with no region is a normal phone)
    STUDY/years.csv                                  model,year (release year per phone model)
    STUDY/generated/<model>/<defect>/*.png + *_mask.png   generated defects (training models only)
    STUDY/hard-negatives/<model>/*.jpg               normals with smudges and reflections

Run `python tests/phone_study.py STUDY` to write it. Every image is drawn from a seed: a phone body and
screen on a plain background, defects as bright or dark polygons whose COCO outline is the one drawn,
so a mask from the annotation can be compared pixel for pixel with what is in the picture.
"""

from __future__ import annotations

import json
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

WIDTH, HEIGHT = 72, 128
MODELS = {"aurora-x": 2017, "borealis-2": 2019, "cirrus": 2021, "dorado-pro": 2023, "equinox": 2024, "fornax-s": 2025}
TEST_YEARS = (2024, 2025)
NORMALS, DEFECTS, HARD_NEGATIVES, GENERATED = 8, 5, 2, 4
DEFECT_KINDS = ("scratch", "crack")


def _rng(*key: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(map(str, key)).encode()))


def phone(model: str, index: int, kind: str) -> Image.Image:
    """A capture of one phone: body, screen (its shade set by the model's year), sensor noise."""
    rng = _rng(model, index, kind)
    year = MODELS[model]
    canvas = Image.new("RGB", (WIDTH, HEIGHT), tuple(int(v) for v in rng.integers(40, 70, 3)))
    draw = ImageDraw.Draw(canvas)
    bezel = max(3, 12 - (year - 2017))  # thinner bezels in later years: the design shift
    draw.rounded_rectangle((6, 6, WIDTH - 7, HEIGHT - 7), radius=8, fill=(25, 25, 28))
    shade = 90 + 10 * (year - 2017) + int(rng.integers(-6, 6))
    draw.rectangle((6 + bezel // 2, 6 + bezel, WIDTH - 7 - bezel // 2, HEIGHT - 7 - bezel), fill=(shade, shade, shade + 20))
    pixels = np.asarray(canvas, np.float32) + rng.normal(0, 3, (HEIGHT, WIDTH, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def defect_polygon(model: str, index: int) -> list[float]:
    """A thin quadrilateral (a scratch or crack) on the screen, in image pixels (x, y, x, y, ...)."""
    rng = _rng(model, index, "polygon")
    x0, y0 = float(rng.uniform(18, WIDTH - 30)), float(rng.uniform(24, HEIGHT - 50))
    dx, dy = float(rng.uniform(8, 14)), float(rng.uniform(18, 30))
    return [x0, y0, x0 + 3, y0, x0 + dx + 3, y0 + dy, x0 + dx, y0 + dy]


def draw_defect(image: Image.Image, polygon: list[float], bright: bool) -> Image.Image:
    ImageDraw.Draw(image).polygon(polygon, fill=(235, 235, 235) if bright else (10, 10, 10))
    return image


def smudge(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A soft, bright blob (fingerprint / reflection): looks odd, is not a defect."""
    layer = Image.new("L", image.size, 0)
    x, y = int(rng.integers(20, WIDTH - 20)), int(rng.integers(30, HEIGHT - 30))
    ImageDraw.Draw(layer).ellipse((x - 10, y - 7, x + 10, y + 7), fill=70)
    layer = layer.filter(ImageFilter.GaussianBlur(3))
    return Image.composite(Image.new("RGB", image.size, (255, 255, 255)), image, layer)


def write_study(root: Path) -> Path:
    """Write the study under `root` and return it."""
    photos = root / "photos"
    for model, year in MODELS.items():
        folder = photos / model
        folder.mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for i in range(NORMALS + DEFECTS):
            name = f"{model}_{i:03d}.jpg"
            image = phone(model, i, "real")
            if i >= NORMALS:
                kind = DEFECT_KINDS[i % 2]
                polygon = defect_polygon(model, i)
                draw_defect(image, polygon, bright=kind == "scratch")
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1 + i % 2,
                                    "segmentation": [polygon], "iscrowd": 0, "area": 0.0,
                                    "bbox": [polygon[0], polygon[1], polygon[4] - polygon[0], polygon[5] - polygon[1]]})
            image.save(folder / name, quality=95)
            images.append({"id": i + 1, "file_name": name, "width": WIDTH, "height": HEIGHT})
        categories = [{"id": 1 + k, "name": kind} for k, kind in enumerate(DEFECT_KINDS)]
        (folder / f"{model}_ann.json").write_text(json.dumps(
            {"images": images, "annotations": annotations, "categories": categories}))
        for i in range(HARD_NEGATIVES):
            target = root / "hard-negatives" / model / f"{model}_hn{i}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            smudge(phone(model, i, "hard"), _rng(model, i, "smudge")).save(target, quality=95)
        if year in TEST_YEARS:
            continue
        for i in range(GENERATED):
            kind = DEFECT_KINDS[i % 2]
            target = root / "generated" / model / kind / f"{model}_gen{i}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            polygon = defect_polygon(model, 100 + i)
            draw_defect(phone(model, 100 + i, "generated"), polygon, bright=kind == "scratch").save(target)
            mask = Image.new("L", (WIDTH, HEIGHT), 0)
            ImageDraw.Draw(mask).polygon(polygon, fill=255)
            mask.save(target.with_name(f"{target.stem}_mask.png"))
    (root / "years.csv").write_text("model,year\n" + "".join(f"{m},{y}\n" for m, y in MODELS.items()))
    return root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/phone_study.py STUDY_DIR")
    print(f"wrote {write_study(Path(sys.argv[1]))}")
