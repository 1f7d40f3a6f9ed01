"""Write a small synthetic run folder in the runner's exact store format (SPEC 9), for tests.

Scores are drawn per method with a known separation, and every metric in `runs.jsonl` is
computed from those scores (scikit-learn), so curves, tables and stored numbers agree; only the
CIs are made up (no bootstrap, to keep tests fast).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

DATASET = "smartphone-synth"
# One group name carries Markdown/HTML/LaTeX metacharacters: reports must escape it.
GROUPS = {2024: "phone-2024-a", 2025: "phone-2025|<b>x</b>_&"}
DEFECTS = ("scratch", "crack", "burn_in")
FAILED_ERROR = "RuntimeError: plugin exploded | <script>alert(1)</script>"
PROMPTING_METHODS = ("winclip", "anomalygpt")  # get `text_metrics` (answer F1, location accuracy)
# method -> (separation of anomalous scores in noise units, score scale, p50 latency ms)
METHOD_PROFILES = {"patchcore": (2.5, 1.0, 45.0), "winclip": (1.2, 0.01, 130.0), "dino-knn": (1.8, 5.0, 70.0)}


def write_fake_run(
    run_dir: Path,
    methods: Sequence[str] = ("patchcore", "winclip"),
    *,
    failed_method: str | None = "anomalygpt",
    weights: str = "random",
    seeds: Sequence[int] = (0,),
    with_latency: bool = True,
) -> Path:
    """Write `runs.jsonl`, `scores/*.parquet` and `maps/*.npz` for `methods` x seeds on one dataset.

    `failed_method` adds a failed cell (metrics and files null) with `FAILED_ERROR`.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "scores").mkdir(exist_ok=True)
    (run_dir / "maps").mkdir(exist_ok=True)
    lines = []
    for method in methods:
        for seed in seeds:
            lines.append(_ok_cell(run_dir, method, seed, weights, with_latency))
    if failed_method:
        key = f"{failed_method}__default__{DATASET}__s0"
        lines.append({**_common(key, failed_method, 0, weights), "status": "failed", "error": FAILED_ERROR})
    with (run_dir / "runs.jsonl").open("w", encoding="utf-8") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    return run_dir


def _common(key: str, method: str, seed: int, weights: str) -> dict[str, object]:
    return {
        "schema": 1,
        "run_id": "fake-run",
        "cell_key": key,
        "method": method,
        "variant": "default",
        "dataset": DATASET,
        "seed": seed,
        "status": "ok",
        "error": None,
        "weights": weights,
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
                    "image_id": f"{split}/{i:03d}.png",
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


def _ok_cell(run_dir: Path, method: str, seed: int, weights: str, with_latency: bool) -> dict[str, object]:
    separation, scale, p50 = METHOD_PROFILES.get(method, (1.0, 1.0, 90.0))
    rng = np.random.default_rng([zlib.crc32(method.encode()), seed])
    images = _images()
    noise = rng.normal(size=len(images))
    shift = separation * images["label"] + 0.8 * images["hard_negative"]
    images["score"] = scale * (noise + shift)
    images["text"] = np.where(images["score"] > scale * separation / 2, "Yes, anomalous.", "No.")
    key = f"{method}__default__{DATASET}__s{seed}"
    images.to_parquet(run_dir / "scores" / f"{key}.parquet", index=False)
    test = images[images["split"] == "test"]
    maps = rng.random((len(test), 64, 64)).astype(np.float16)
    np.savez(run_dir / "maps" / f"{key}.npz", image_ids=test["image_id"].to_numpy(str), maps=maps)

    val = images[images["split"] == "val"]
    threshold = _best_f1_threshold(val["label"].to_numpy(), val["score"].to_numpy())
    y, s = test["label"].to_numpy(), test["score"].to_numpy()
    f1, precision, recall = _f1_at(y, s, threshold)
    f1_max = _f1_at(y, s, _best_f1_threshold(y, s))[0]
    auroc, aupr = float(roc_auc_score(y, s)), float(average_precision_score(y, s))
    cell = _common(key, method, seed, weights)
    cell["metrics"] = {
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
        "n_normal": int((y == 0).sum()),
        "n_anomalous": int(y.sum()),
        "undefined_reason": None,
    }
    if with_latency:
        cell["latency"] = {
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
    cell["breakdowns"] = {
        kind: _strata(test, kind, threshold) for kind in ("year", "group", "defect", "source")
    }
    normals = test[test["label"] == 0]
    hard = normals["hard_negative"].to_numpy(bool)
    flagged = normals["score"].to_numpy() >= threshold
    cell["hard_negative"] = {
        "fpr": float(flagged[hard].mean()), "normal_fpr": float(flagged[~hard].mean()),
        "n_hard_negative": int(hard.sum()), "n_normal": int((~hard).sum()), "threshold": threshold,
    }  # fmt: skip
    if method in PROMPTING_METHODS:
        cell["text_metrics"] = {
            "decision_f1": f1, "decision_accuracy": float(((s >= threshold) == (y == 1)).mean()),
            "n_failed_answers": 1, "location_accuracy": 0.5, "n_located": 24,
        }  # fmt: skip
    cell["scores_file"] = f"scores/{key}.parquet"
    cell["maps_file"] = f"maps/{key}.npz"
    return cell


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
            "auroc": roc_auc_score(y, s) if two_classes else None, "f1": f1 if y.sum() else None,
            "precision": precision, "recall": recall if y.sum() else None,
            "fpr": float((s[y == 0] >= threshold).mean()) if (y == 0).any() else None,
        }  # fmt: skip
    return out


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
