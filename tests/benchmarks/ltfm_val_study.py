"""LTFM configuration study on the validation split only (issue 25): one line of numbers per configuration.

Each configuration is the `ltfm` plugin with some options, fitted exactly as the runner fits it
(training rows of the variant's sources, validation images for early stopping and the threshold)
and scored on the validation images: AUROC, F1-max, and AUROC per defect kind (that kind's
anomalies against all normals), with the configured image score; and the AUROC the same fitted
model gets with each of the three image scores (head, map, mean). Test images are never loaded. Early stopping and scoring use
the same 70 validation images, so every number is optimistic by the same selection; the study
compares configurations, it does not estimate test performance.

    python tests/benchmarks/ltfm_val_study.py --dataset smartphone-synth --variant ft-real-gen \
        --config 'squash=anyres=false' --config 'anyres=' --config 'map=score=map' --seeds 0

A configuration is `NAME=KEY:VALUE,KEY:VALUE` (options of `ltfm`, as `--option ltfm.KEY=VALUE`);
`NAME=` alone is the defaults. Results are appended as JSON lines to `--out`.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_auc_score

from baselines.ltfm_plugin import LTFMBaseline
from benchmarks.api import FeatureCache, MethodContext, WeightsResolver, cache_root
from benchmarks.data.loaders import load_dataset
from benchmarks.plugins.options import parse_option_args
from benchmarks.running.cell import load_samples, select_train
from benchmarks.running.presets import get_preset
from ltfm.trainer import IMAGE_SCORES, predict_features


def parse_config(text: str) -> tuple[str, dict[str, object]]:
    """`NAME=KEY:VALUE,...` -> the name and the options, values parsed as `--option ltfm.KEY=VALUE` parses them."""
    name, _, body = text.partition("=")
    items = re.split(r",(?=\w+:)", body)  # a comma inside a value (cnn_stages) stays in it
    pairs = [f"ltfm.{item.replace(':', '=', 1)}" for item in items if item]
    return name, parse_option_args(pairs, ["ltfm"]).get("ltfm", {})


def f1_max(labels: np.ndarray, scores: np.ndarray) -> float:
    precision, recall, _ = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(f1.max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="smartphone-synth")
    parser.add_argument("--variant", default="ft-real-gen")
    parser.add_argument("--config", action="append", default=[])
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--preset", default="default")
    parser.add_argument("--out", type=Path, default=Path("results/ltfm-val-study.jsonl"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    preset = get_preset(args.preset)
    dataset = load_dataset(args.dataset, scale=preset.data_scale)
    spec = LTFMBaseline.meta.variants[args.variant]
    val = load_samples(dataset.split("val"), with_masks=False)
    labels = np.array([s.label for s in val])
    defects = np.array([s.record.defect for s in val])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        train = load_samples(select_train(dataset.records, spec, seed, preset.max_train_images), with_masks=True)
        for name, options in map(parse_config, args.config or ["defaults="]):
            context = MethodContext(
                variant=args.variant, seed=seed, device="cpu", weights=WeightsResolver(mode="auto"), preset=preset,
                class_name=dataset.class_name, description=dataset.description, work_dir=None, options=options,
                feature_cache=FeatureCache(cache_root() / "features"),
            )
            started = time.perf_counter()
            plugin = LTFMBaseline(context)
            plugin.fit(train, val)
            fit_s = time.perf_counter() - started
            scores = plugin.predict([s.image for s in val]).scores
            assert plugin.model is not None
            val_set = plugin._feature_set(val)
            by_score = {kind: round(float(roc_auc_score(labels, predict_features(plugin.model, val_set, kind)[0])), 4)
                        for kind in IMAGE_SCORES}
            per_defect = {d: round(float(roc_auc_score(labels[(defects == d) | (labels == 0)],
                                                       scores[(defects == d) | (labels == 0)])), 3)
                          for d in sorted(set(defects[labels == 1]))}
            result = plugin.fit_result
            line = {
                "dataset": args.dataset, "variant": args.variant, "seed": seed, "config": name, "options": options,
                "crops": plugin.crops.describe(), "val_auroc": round(float(roc_auc_score(labels, scores)), 4),
                "val_f1_max": round(f1_max(labels, scores), 4), "per_defect": per_defect,
                "val_auroc_by_score": by_score,
                "best_epoch": result.best_epoch if result else None, "epochs_run": result.epochs_run if result else None,
                "fit_s": round(fit_s, 1),
            }
            print(json.dumps(line), flush=True)
            with args.out.open("a") as handle:
                handle.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
