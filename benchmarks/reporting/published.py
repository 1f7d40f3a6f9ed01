"""Published numbers of the suite's methods, with their sources, for "published vs reproduced" tables.

Values are in percent, as printed in the papers. An entry names the method and the variants of
this suite that run the paper's protocol, and the kind of dataset it was measured on; a
reproduced number is comparable only on a dataset of the same kind (`dataset_kind`), with
pretrained weights. MVTec AD / VisA entries are means over all categories of the full test
set; the suite's `mvtec:` loader moves 20 % of each category's test images to validation, so
even a matching run differs slightly in protocol (said in `PROTOCOL_CAVEATS`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DatasetKind = Literal["mvtec", "visa", "smartphone-study"]
# `dataset.json` beside a manifest marks it as the study's own data: {"published_reference": "smartphone-study"}.
SIDECAR = "dataset.json"
SIDECAR_KEY = "published_reference"
DATASET_KIND_NAMES: dict[str, str] = {
    "mvtec": "MVTec AD",
    "visa": "VisA",
    "smartphone-study": "the study's real smartphone set",
}
PROTOCOL_CAVEATS: dict[str, str] = {
    "mvtec": "published: mean over the 15 categories, full test set; here: 20 % of test moved to val",
    "visa": "published: mean over the 12 categories, full test set; here: 20 % of test moved to val",
    "smartphone-study": "F1 at the study's threshold; here: F1 at the validation threshold",
}


@dataclass(frozen=True)
class PublishedResult:
    """One published number and where it comes from.

    `metric` is the suite's name for it (a `runs.jsonl` metric, or `decision_accuracy` from
    the text metrics); `variants` are the suite's variants of `method` that run `protocol`.
    """

    method: str
    variants: tuple[str, ...]
    dataset_kind: DatasetKind
    protocol: str
    metric: str
    value: float
    paper: str
    table: str
    note: str = ""
    requires: tuple[str, ...] = ()
    """Provenance facts (`Baseline.provenance`) every reproducing cell must report as true."""
    never_comparable: str = ""
    """Why the suite's method can never reproduce this number (it is shown for reference only)."""

    @property
    def dataset_name(self) -> str:
        return DATASET_KIND_NAMES[self.dataset_kind]


WINCLIP = "Jeong et al., WinCLIP: Zero-/Few-Shot Anomaly Classification and Segmentation, CVPR 2023"
PATCHCORE = "Roth et al., Towards Total Recall in Industrial Anomaly Detection (PatchCore), CVPR 2022"
ANOMALYDINO = (
    "Damm et al., AnomalyDINO: Boosting Patch-based Few-shot Anomaly Detection with DINOv2, WACV 2025"
)
ANOMALYGPT = (
    "Gu et al., AnomalyGPT: Detecting Industrial Anomalies Using Large Vision-Language Models, AAAI 2024"
)
ANOMALY_OV = (
    "Xu et al., Towards Zero-shot Anomaly Detection and Reasoning with Multimodal LLMs (Anomaly-OneVision), "
    "CVPR 2025"
)
STUDY = "The smartphone study (SPEC section 1): LTFM fine-tuned on a real smartphone defect set"

_WINCLIP_ZERO = ("k0", "zero-shot")
_ANOMALYGPT_STAND_IN = (
    "the suite's anomalygpt is an open_clip encoder with trained decoders and template answers; the paper's"
    " numbers come from ImageBind-Huge with an LLM"
)


def _winclip_shots(kind: DatasetKind, values: tuple[float, float, float]) -> tuple[PublishedResult, ...]:
    return tuple(
        PublishedResult("winclip", (f"k{k}",), kind, f"{k}-shot (WinCLIP+)", "image_auroc", value, WINCLIP,
                        "few-normal-shot classification table (1-shot also in the abstract)")
        for k, value in zip((1, 2, 4), values, strict=True)
    )  # fmt: skip


PUBLISHED: tuple[PublishedResult, ...] = (
    PublishedResult("winclip", _WINCLIP_ZERO, "mvtec", "zero-shot", "image_auroc", 91.8, WINCLIP,
                    "zero-shot classification table; abstract"),
    PublishedResult("winclip", _WINCLIP_ZERO, "visa", "zero-shot", "image_auroc", 78.1, WINCLIP,
                    "zero-shot classification table; abstract"),
    PublishedResult("winclip", _WINCLIP_ZERO, "mvtec", "zero-shot", "f1_max", 92.9, WINCLIP,
                    "zero-shot classification table"),
    PublishedResult("winclip", _WINCLIP_ZERO, "visa", "zero-shot", "f1_max", 79.0, WINCLIP,
                    "zero-shot classification table"),
    PublishedResult("winclip", _WINCLIP_ZERO, "mvtec", "zero-shot", "pixel_auroc", 85.1, WINCLIP,
                    "zero-shot segmentation table; abstract"),
    PublishedResult("winclip", _WINCLIP_ZERO, "visa", "zero-shot", "pixel_auroc", 79.6, WINCLIP,
                    "zero-shot segmentation table; abstract"),
    *_winclip_shots("mvtec", (93.1, 94.4, 95.2)),
    *_winclip_shots("visa", (83.8, 84.6, 87.3)),
    PublishedResult("patchcore", ("default",), "mvtec", "full-shot, WRN50, 224 px, 10 % coreset",
                    "image_auroc", 99.2, PATCHCORE,
                    "official code README (amazon-science/patchcore-inspection), WR50-baseline",
                    note="the paper's own table gives 99.0-99.1 for its coreset sizes"),
    PublishedResult("dino-knn", ("k1",), "mvtec", "1-shot", "image_auroc", 96.6, ANOMALYDINO,
                    "few-shot results table; abstract", note="448 px, ViT-S/14"),
    PublishedResult("anomalygpt", ("k1",), "mvtec", "1-shot", "image_auroc", 94.1, ANOMALYGPT,
                    "few-shot results table", note="paper: ImageBind-Huge encoder and an LLM",
                    never_comparable=_ANOMALYGPT_STAND_IN),
    PublishedResult("anomalygpt", ("k1",), "mvtec", "1-shot", "pixel_auroc", 95.3, ANOMALYGPT,
                    "few-shot results table", note="paper: ImageBind-Huge encoder and an LLM",
                    never_comparable=_ANOMALYGPT_STAND_IN),
    PublishedResult("anomalygpt", ("k1",), "mvtec", "1-shot", "decision_accuracy", 86.1, ANOMALYGPT,
                    "few-shot results table", note="accuracy of the LLM's Yes/No answers",
                    never_comparable=_ANOMALYGPT_STAND_IN),
    PublishedResult("ltfm", ("base",), "mvtec", "zero-shot", "image_auroc", 94.0, ANOMALY_OV,
                    "zero-shot detection table",
                    note="comparable only with the authors' expert checkpoint (`expert_checkpoint`)",
                    requires=("expert_checkpoint",)),
    PublishedResult("ltfm", ("base",), "visa", "zero-shot", "image_auroc", 91.1, ANOMALY_OV,
                    "zero-shot detection table",
                    note="comparable only with the authors' expert checkpoint (`expert_checkpoint`)",
                    requires=("expert_checkpoint",)),
    PublishedResult("ltfm", ("base",), "smartphone-study", "pretrained expert", "f1", 84.73, STUDY,
                    "F1 table", note="train 2017-2023 releases, test 2024-2025, real images only",
                    requires=("expert_checkpoint",)),
    PublishedResult("ltfm", ("ft-real",), "smartphone-study", "fine-tuned on real", "f1", 87.38, STUDY,
                    "F1 table", note="train 2017-2023 releases, test 2024-2025, real images only",
                    requires=("expert_checkpoint",)),
    PublishedResult("ltfm", ("ft-real-gen",), "smartphone-study", "fine-tuned on real + generated", "f1",
                    88.48, STUDY, "F1 table", note="train 2017-2023 releases, test 2024-2025, real images only",
                    requires=("expert_checkpoint",)),
)  # fmt: skip


def comparability(
    entry: PublishedResult, *, kind: str | None, weights: str | None, provenance: list[dict[str, object]]
) -> str | None:
    """None when a reproduced number may stand beside `entry`; else the reason it may not.

    The rules, in order: the method can reproduce the paper at all (`never_comparable`); the
    dataset is of the paper's kind; the weights are the paper's (`pretrained`: substitute and
    random never compare); every cell reports the provenance facts the entry `requires` (e.g.
    LTFM started from the authors' expert checkpoint).
    """
    if entry.never_comparable:
        return f"not comparable: {entry.never_comparable}"
    if kind != entry.dataset_kind:
        return "not comparable: different data"
    if weights != "pretrained":
        return {"random": "not comparable: random weights", "substitute": "not comparable: substitute backbone"}.get(
            str(weights), f"not comparable: weights {weights}")
    missing = [key for key in entry.requires if not provenance or not all(p.get(key) for p in provenance)]
    if missing:
        return f"not comparable: the cell does not report {', '.join(missing)}"
    return None


def lookup(
    method: str,
    variant: str | None = None,
    dataset_kind: str | None = None,
    metric: str | None = None,
) -> list[PublishedResult]:
    """Published entries for `method`, narrowed by variant, dataset kind and metric where given."""
    return [
        entry
        for entry in PUBLISHED
        if entry.method == method
        and (variant is None or variant in entry.variants)
        and (dataset_kind is None or entry.dataset_kind == dataset_kind)
        and (metric is None or entry.metric == metric)
    ]


def dataset_kind(dataset: str, dataset_root: str | Path | None = None) -> DatasetKind | None:
    """The published dataset kind a run's dataset matches, or None.

    `mvtec:PATH/CATEGORY` is MVTec AD, or VisA when a folder of PATH is named like `visa`. A
    `manifest:` dataset is the smartphone study's own data only when its `dataset.json` (in
    `dataset_root`, the manifest's folder) says `"published_reference": "smartphone-study"`.
    """
    kind, _, argument = dataset.partition(":")
    if kind == "mvtec" and argument:
        parts = [p.lower() for p in re.split(r"[\\/]+", argument) if p]
        return "visa" if any(p == "visa" or p.startswith("visa_") for p in parts[:-1]) else "mvtec"
    if kind == "manifest" and dataset_root is not None:
        sidecar = Path(dataset_root) / SIDECAR
        try:
            meta = json.loads(sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if isinstance(meta, dict) and meta.get(SIDECAR_KEY) == "smartphone-study":
            return "smartphone-study"
    return None
