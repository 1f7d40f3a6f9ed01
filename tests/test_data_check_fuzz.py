"""Property test: `data check` names every undecodable image with its row and never prints a traceback."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from benchmarks.cli import main

KINDS = ("good", "truncated", "random_bytes", "text_as_png", "huge_dimensions", "png_as_txt")
EXAMPLES = 60


def _png(seed: int, size: int = 12) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def _huge(png: bytes, side: int = 200_000) -> bytes:
    """The same PNG with its IHDR claiming `side` x `side` pixels (CRC fixed so only the size is wrong)."""
    ihdr = bytearray(png[16:29])  # width, height, depth, colour type, ...
    ihdr[0:8] = struct.pack(">II", side, side)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)))
    return png[:16] + bytes(ihdr) + crc + png[33:]


def _file(kind: str, seed: int, cut: float) -> tuple[str, bytes]:
    png = _png(seed)
    if kind == "truncated":
        return ".png", png[: max(8, int(len(png) * cut))]
    if kind == "random_bytes":
        return ".png", np.random.default_rng(seed).integers(0, 256, 64 + seed % 200, dtype=np.uint8).tobytes()
    if kind == "text_as_png":
        return ".png", b"this is a text file, not an image\n" * (1 + seed % 5)
    if kind == "huge_dimensions":
        return ".png", _huge(png)
    if kind == "png_as_txt":
        return ".txt", png
    return ".png", png


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(st.sampled_from(KINDS), st.integers(0, 10_000), st.floats(0.05, 0.95)),
                     min_size=1, max_size=8))
def test_data_check_names_every_bad_row(rows: list[tuple[str, int, float]], tmp_path_factory, capsys) -> None:
    root = tmp_path_factory.mktemp("manifest")
    entries = []
    for index, (kind, seed, cut) in enumerate(rows):
        suffix, data = _file(kind, seed, cut)
        (root / f"img{index}{suffix}").write_bytes(data)
        entries.append({"image": f"img{index}{suffix}", "label": index % 2, "split": ("train", "val", "test")[index % 3],
                        "source": "real", "year": 2024, "group": "g", "defect": "scratch" if index % 2 else "none",
                        "hard_negative": False, "mask": ""})
    manifest = root / "manifest.csv"
    pd.DataFrame(entries).to_csv(manifest, index=False)

    code = main(["data", "check", str(manifest)])
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    lines = out.out.splitlines()
    for index, (kind, _, _) in enumerate(rows):
        named = [line for line in lines if line.startswith(f"error: row {index + 1} [image]")]
        if kind == "good":
            assert not named, named
        else:
            assert named, f"row {index + 1} ({kind}) not named:\n{out.out}"
    if any(kind != "good" for kind, _, _ in rows):
        assert code == 1
