"""Look-Twice Feature Matching (Anomaly-OneVision's anomaly expert): module, towers, trainer, checkpoints.

`LTFM` maps multi-level tokens of a frozen vision tower (`ltfm.towers`) to an anomaly score and
a significance map; `ltfm.trainer` trains it on tower features computed once per image;
`ltfm.anyres` cuts an image into the global view and high-resolution tiles; `ltfm.synthetic` draws the generic source domain of the `base` variant; `ltfm.checkpoint` saves
and loads it (safetensors + JSON) and imports Anomaly-OneVision expert checkpoints.

The package stands alone: it imports nothing of the benchmark suite (a test checks it). Weight
files and a shared feature store are handed in by the caller; the suite's glue is
`baselines/ltfm_plugin.py` and `baselines/ltfm_towers.py`.
"""

from ltfm.anyres import AnyResGrid
from ltfm.checkpoint import load_checkpoint, load_expert_checkpoint, save_checkpoint
from ltfm.module import LTFM, LTFMConfig, LTFMOutput, adverb
from ltfm.synthetic import synthetic_source_domain
from ltfm.towers import ARCHITECTURES, CnnStageTower, TowerFeatures, VisionTower, encode_images
from ltfm.trainer import (
    FeatureMemory,
    FeatureSet,
    FeatureStore,
    TrainConfig,
    TrainResult,
    schedule,
    train_ltfm,
)

__all__ = [
    "ARCHITECTURES",
    "AnyResGrid",
    "LTFM",
    "CnnStageTower",
    "FeatureMemory",
    "FeatureSet",
    "FeatureStore",
    "LTFMConfig",
    "LTFMOutput",
    "TowerFeatures",
    "TrainConfig",
    "TrainResult",
    "VisionTower",
    "adverb",
    "encode_images",
    "load_checkpoint",
    "load_expert_checkpoint",
    "save_checkpoint",
    "schedule",
    "synthetic_source_domain",
    "train_ltfm",
]
