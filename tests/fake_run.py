"""Write a small synthetic run folder in the runner's exact store format (SPEC 9), for tests.

Scores are drawn per method with a known separation, and every metric in `runs.jsonl` is
computed from those scores (scikit-learn), so curves, tables and stored numbers agree; only the
CIs are made up (no bootstrap, to keep tests fast). A tiny dataset folder (`dataset_root`) holds
the test images (phone-like 48x80 PNGs), defect masks and a `manifest.csv`, and every cell
stores 64x64 maps that peak on the defect (stronger for better-separated methods).
"""

from __future__ import annotations

import json
import math
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage
from scipy.stats import rankdata
from sklearn.metrics import average_precision_score, precision_recall_curve

DATASET = "smartphone-synth"
# One group name carries Markdown/HTML/LaTeX metacharacters: reports must escape it.
GROUPS = {2024: "phone-2024-a", 2025: "phone-2025|<b>x</b>_&"}
DEFECTS = ("scratch", "crack", "burn_in")
FAILED_ERROR = "RuntimeError: plugin exploded | <script>alert(1)</script>"
PROMPTING_METHODS = ("winclip", "anomalygpt")  # get `text_metrics` (answer F1, location accuracy)
# method -> (separation of anomalous scores in noise units, score scale, p50 latency ms)
Profile = tuple[float, float, float]
METHOD_PROFILES: dict[str, Profile] = {
    "patchcore": (2.5, 1.0, 45.0), "winclip": (1.2, 0.01, 130.0), "dino-knn": (1.8, 5.0, 70.0),
}  # fmt: skip
# The LTFM ablation improves as in the study; k-shot variants improve with log2(k).
LTFM_GAIN = {"base": 0.8, "ft-real": 1.5, "ft-real-gen": 1.8}
IMAGE_SIZE = (48, 80)  # width, height: portrait like a phone
MAP_SIZE = 64


def write_fake_run(
    run_dir: Path,
    methods: Sequence[str] = ("patchcore", "winclip"),
    *,
    failed_method: str | None = "anomalygpt",
    weights: str | Mapping[str, str] = "random",
    seeds: Sequence[int] = (0,),
    with_latency: bool = True,
    variants: Mapping[str, Sequence[str]] | None = None,
    dataset: str = DATASET,
    profiles: Mapping[str, Profile] | None = None,
    shared_noise: bool = False,
    with_maps: bool = True,
    provenance: Mapping[str, Mapping[str, object]] | None = None,
) -> Path:
    """Write `runs.jsonl`, `scores/*.parquet`, `maps/*.npz` and the dataset folder `<run_dir>/dataset`.

    Cells are `methods` x their `variants` (default: "default") x seeds on `dataset`.
    `weights` is one stamp for every cell or a stamp per method ("random" for the others).
    `failed_method` adds a failed cell (metrics and files null) with `FAILED_ERROR`. `profiles`
    override `METHOD_PROFILES`; with `shared_noise` every method draws the same noise, so methods
    with the same separation rank the images identically.
    `provenance` maps a method (or "method/variant") to the facts its ok cells report (`Baseline.provenance`).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "scores").mkdir(exist_ok=True)
    (run_dir / "maps").mkdir(exist_ok=True)
    root = run_dir / "dataset"
    centers = _write_dataset(root)
    lines = []

    def stamp(method: str) -> str:
        return weights if isinstance(weights, str) else weights.get(method, "random")

    for method in methods:
        profile = {**METHOD_PROFILES, **(profiles or {})}.get(method, (1.0, 1.0, 90.0))
        for variant in (variants or {}).get(method, ("default",)):
            for seed in seeds:
                cell = _Cell(method, variant, dataset, seed, stamp(method))
                lines.append(
                    _ok_cell(
                        run_dir, cell, profile, with_latency, shared_noise, centers if with_maps else None
                    )
                )
    if failed_method:
        cell = _Cell(failed_method, "default", dataset, 0, stamp(failed_method))
        lines.append({**_common(cell), "status": "failed", "error": FAILED_ERROR})
    for line in lines:
        line["dataset_root"] = str(root.resolve())
        if line["status"] == "ok":
            facts = provenance or {}
            line["provenance"] = dict(facts.get(f"{line['method']}/{line['variant']}", facts.get(str(line["method"]), {})))
    with (run_dir / "runs.jsonl").open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    return run_dir


@dataclass(frozen=True)
class _Cell:
    method: str
    variant: str
    dataset: str
    seed: int
    weights: str

    @property
    def key(self) -> str:
        return (
            f"{self.method}__{self.variant}__{re.sub(r'[^A-Za-z0-9._-]+', '_', self.dataset)}__s{self.seed}"
        )


def _common(cell: _Cell) -> dict[str, object]:
    method = cell.method
    return {
        "schema": 1,
        "run_id": "fake-run",
        "cell_key": cell.key,
        "method": method,
        "variant": cell.variant,
        "dataset": cell.dataset,
        "seed": cell.seed,
        "status": "ok",
        "error": None,
        "weights": cell.weights,
        # as the runner writes it for a substitute (the tag is derived from it when a line has none)
        "weights_detail": [{"key": "mobilenetv2_100_in1k_deepsort", "mode": "substitute", "label": "MobileNetV2-IN1k",
                            "substitute_for": "tiny"}] if cell.weights == "substitute" else [],
        "metrics": None,
        "latency": None,
        "breakdowns": None,
        "hard_negative": None,
        "method_meta": {
            "name": method,
            "paper": "fake",
            "backbone": "tiny",
            "weights_id": "none",
            "input_size": 64,
        },
        "preset": "smoke",
        "config_hash": "abc123",
        "versions": {"python": "3.11.7", "torch": "2.5.0", "benchmarks": "0.1.0"},
        "hardware": {"cpu": "Fake CPU @ 2GHz", "threads": 2, "gpu": None},
        "scores_file": None,
        "maps_file": None,
        "dataset_root": "/data/smartphone-synth",
    }


def _images() -> pd.DataFrame:
    rows = []
    for split, years, n_normal, n_hard, n_anomalous in (
        ("val", (2020, 2023), 30, 6, 15),
        ("test", (2024, 2025), 40, 10, 24),
    ):
        for i in range(n_normal + n_anomalous):
            label = int(i >= n_normal)
            year = years[i % 2]
            rows.append(
                {
                    "image_id": f"images/{split}/{i:03d}.png",
                    "image": f"images/{split}/{i:03d}.png",
                    "label": label,
                    "split": split,
                    "source": "real",
                    "year": year,
                    "group": GROUPS.get(year, f"phone-{year}"),
                    "defect": DEFECTS[i % len(DEFECTS)] if label else "none",
                    "hard_negative": i < n_hard,
                }
            )
    frame = pd.DataFrame(rows)
    frame["year"] = frame["year"].astype("Int64")
    return frame


def _variant_gain(variant: str) -> float:
    if (shots := re.fullmatch(r"k(\d+)", variant)) is not None:
        return 0.6 + 0.2 * math.log2(1 + int(shots.group(1)))
    return LTFM_GAIN.get(variant, 1.0)


def _ok_cell(
    run_dir: Path,
    cell: _Cell,
    profile: Profile,
    with_latency: bool,
    shared_noise: bool,
    centers: dict[str, tuple[float, float]] | None,
) -> dict[str, object]:
    separation, scale, p50 = profile
    separation *= _variant_gain(cell.variant)
    method, seed, key = cell.method, cell.seed, cell.key
    rng = np.random.default_rng(
        [0 if shared_noise else zlib.crc32(f"{method}/{cell.variant}".encode()), seed]
    )
    images = _images()
    noise = rng.normal(size=len(images))
    shift = separation * images["label"] + 0.8 * images["hard_negative"]
    images["score"] = scale * (noise + shift)
    images["text"] = np.where(images["score"] > scale * separation / 2, "Yes, anomalous.", "No.")
    images.to_parquet(run_dir / "scores" / f"{key}.parquet", index=False)
    test = images[images["split"] == "test"]
    if centers is not None:
        maps = np.stack([_fake_map(rng, centers.get(i), separation) for i in test["image_id"]])
        np.savez(run_dir / "maps" / f"{key}.npz", image_ids=test["image_id"].to_numpy(str), maps=maps)

    val = images[images["split"] == "val"]
    threshold = _best_f1_threshold(val["label"].to_numpy(), val["score"].to_numpy())
    y, s = test["label"].to_numpy(), test["score"].to_numpy()
    f1, precision, recall = _f1_at(y, s, threshold)
    f1_max = _f1_at(y, s, _best_f1_threshold(y, s))[0]
    auroc, aupr = float(_auroc(y, s)), float(average_precision_score(y, s))
    line = _common(cell)
    line["metrics"] = {
        "image_auroc": auroc,
        "image_auroc_ci": _interval(auroc),
        "aupr": aupr,
        "aupr_ci": _interval(aupr),
        "f1": f1,
        "f1_ci": _interval(f1),
        "precision": precision,
        "recall": recall,
        "threshold": threshold,
        "threshold_source": "val",
        "f1_max": f1_max,
        "f1_max_ci": _interval(f1_max),
        "pixel_auroc": None,
        "aupro": None,
        "val_image_auroc": float(_auroc(val["label"].to_numpy(), val["score"].to_numpy())),
        "n_normal": int((y == 0).sum()),
        "n_anomalous": int(y.sum()),
        "undefined_reason": None,
    }
    if with_latency:
        line["latency"] = {
            "device": "cpu",
            "batch1_p50_ms": p50,
            "batch1_p95_ms": p50 * 1.2,
            "batch1_mean_ms": p50 * 1.05,
            "n_timed": 20,
            "throughput_ips": 1000 / p50 * 2.5,
            "throughput_batch_size": 8,
            "fit_s": 3.2,
            "predict_s": 2.1,
            "peak_mem_mb": 812.0,
            "peak_mem_kind": "rss",
        }
    line["breakdowns"] = {
        kind: _strata(test, kind, threshold) for kind in ("year", "group", "defect", "source")
    }
    normals = test[test["label"] == 0]
    hard = normals["hard_negative"].to_numpy(bool)
    flagged = normals["score"].to_numpy() >= threshold
    line["hard_negative"] = {
        "fpr": float(flagged[hard].mean()), "normal_fpr": float(flagged[~hard].mean()),
        "n_hard_negative": int(hard.sum()), "n_normal": int((~hard).sum()), "threshold": threshold,
    }  # fmt: skip
    if method in PROMPTING_METHODS:
        line["text_metrics"] = {
            "decision_f1": f1, "decision_accuracy": float(((s >= threshold) == (y == 1)).mean()),
            "n_failed_answers": 1, "location_accuracy": 0.5, "n_located": 24,
        }  # fmt: skip
    line["scores_file"] = f"scores/{key}.parquet"
    line["maps_file"] = f"maps/{key}.npz" if centers is not None else None
    return line


def _write_dataset(root: Path) -> dict[str, tuple[float, float]]:
    """Test images, masks and `manifest.csv` under `root`; returns image_id -> defect centre (x, y in 0..1)."""
    test = _images().query("split == 'test'")
    for folder in ("images/test", "masks/test"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    centers: dict[str, tuple[float, float]] = {}
    masks = []
    for i, row in enumerate(test.itertuples()):
        image, mask, center = _fake_image(
            np.random.default_rng([7, i]), bool(row.label), bool(row.hard_negative)
        )
        Image.fromarray(image).save(root / row.image)
        if mask is not None:
            masks.append(f"masks/test/{i:03d}.png")
            Image.fromarray(mask.astype(np.uint8) * 255).save(root / masks[-1])
            centers[str(row.image_id)] = center
        else:
            masks.append("")
    manifest = test.drop(columns=["image_id"]).assign(mask=masks)
    manifest.to_csv(root / "manifest.csv", index=False)
    return centers


def _fake_image(
    rng: np.random.Generator, anomalous: bool, hard_negative: bool
) -> tuple[np.ndarray, np.ndarray | None, tuple[float, float]]:
    """A phone front (frame, screen with a gradient wallpaper); a scratch with its mask, or a smudge."""
    width, height = IMAGE_SIZE
    yy, xx = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    image = np.full((height, width, 3), 40.0)
    screen = (yy > 0.06) & (yy < 0.94) & (xx > 0.08) & (xx < 0.92)
    hue = rng.uniform(0, 1, 3)
    wallpaper = 60 + 140 * (
        hue[None, None, :] * (1 - yy[..., None]) + (1 - hue[None, None, :]) * yy[..., None]
    )
    image[screen] = wallpaper[screen]
    cx, cy = rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.75)
    mask = None
    if anomalous:
        angle = rng.uniform(0, np.pi)
        distance = np.abs((xx - cx) * width * np.sin(angle) - (yy - cy) * height * np.cos(angle))
        along = np.hypot((xx - cx) * width, (yy - cy) * height)
        mask = (distance < 1.2) & (along < 12) & screen
        image[mask] = 245
    elif hard_negative:
        smudge = np.exp(-(((xx - cx) * width) ** 2 + ((yy - cy) * height) ** 2) / 40)
        image += 50 * smudge[..., None]
    return np.clip(image, 0, 255).astype(np.uint8), mask, (cx, cy)


def _fake_map(rng: np.random.Generator, center: tuple[float, float] | None, separation: float) -> np.ndarray:
    """A 64x64 map: smooth noise, plus a peak at the defect whose height grows with the separation."""
    noise = ndimage.zoom(rng.random((8, 8)), MAP_SIZE // 8, order=1)
    if center is None:
        return (0.3 * noise).astype(np.float16)
    yy, xx = np.mgrid[0:MAP_SIZE, 0:MAP_SIZE] / MAP_SIZE
    peak = np.exp(-((xx - center[0]) ** 2 + (yy - center[1]) ** 2) / 0.01)
    return (0.3 * noise + 0.4 * separation * peak).astype(np.float16)


def _strata(test: pd.DataFrame, kind: str, threshold: float) -> dict[str, dict[str, object]]:
    """Like the runner: own strata, except defect kinds, which are scored against all normals."""
    out: dict[str, dict[str, object]] = {}
    normals = test[test["label"] == 0]
    for name, part in test.groupby(kind):
        if kind == "defect" and name != "none":
            part = pd.concat([normals, part])
        y, s = part["label"].to_numpy(), part["score"].to_numpy()
        f1, precision, recall = _f1_at(y, s, threshold)
        two_classes = 0 < y.sum() < len(y)
        out[str(name)] = {
            "n": len(part), "n_normal": int((y == 0).sum()), "n_anomalous": int(y.sum()),
            "auroc": _auroc(y, s) if two_classes else None, "f1": f1 if y.sum() else None,
            "precision": precision, "recall": recall if y.sum() else None,
            "fpr": float((s[y == 0] >= threshold).mean()) if (y == 0).any() else None,
        }  # fmt: skip
    return out


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    """Mann-Whitney AUROC (ties count 1/2), equal to scikit-learn's and much faster on tiny inputs."""
    ranks = rankdata(s)
    positives = int(y.sum())
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * (len(y) - positives)))


def _best_f1_threshold(y: np.ndarray, s: np.ndarray) -> float:
    precision, recall, thresholds = precision_recall_curve(y, s)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def _f1_at(y: np.ndarray, s: np.ndarray, threshold: float) -> tuple[float, float, float]:
    predicted = s >= threshold
    tp = float((predicted & (y == 1)).sum())
    precision = tp / max(predicted.sum(), 1)
    recall = tp / max((y == 1).sum(), 1)
    return 2 * precision * recall / max(precision + recall, 1e-12), precision, recall


def _interval(value: float) -> list[float]:
    """A plausible, asymmetric 95 % interval (the runner bootstraps; the fake need not)."""
    return [max(value - 0.08 * (1 - value) - 0.03, 0.0), min(value + 0.05 * (1 - value) + 0.02, 1.0)]
