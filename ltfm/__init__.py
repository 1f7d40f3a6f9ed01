"""Look-Twice Feature Matching (Anomaly-OneVision's anomaly expert): module, towers, trainer, checkpoints.

`LTFM` maps multi-level tokens of a frozen vision tower (`ltfm.towers`) to an anomaly score and
a significance map; `ltfm.trainer` trains it on cached tower features; `ltfm.checkpoint` saves
and loads it (safetensors + JSON) and imports Anomaly-OneVision expert checkpoints. The method
plugin that uses all of this is `baselines.ltfm_plugin`.
"""

from ltfm.checkpoint import load_checkpoint, load_expert_checkpoint, save_checkpoint
from ltfm.module import LTFM, LTFMConfig, LTFMOutput, adverb
from ltfm.towers import TOWERS, TowerFeatures, VisionTower, build_tower, encode_images
from ltfm.trainer import FeatureCache, FeatureSet, TrainConfig, TrainResult, schedule, train_ltfm

__all__ = [
    "LTFM",
    "TOWERS",
    "FeatureCache",
    "FeatureSet",
    "LTFMConfig",
    "LTFMOutput",
    "TowerFeatures",
    "TrainConfig",
    "TrainResult",
    "VisionTower",
    "adverb",
    "build_tower",
    "encode_images",
    "load_checkpoint",
    "load_expert_checkpoint",
    "save_checkpoint",
    "schedule",
    "train_ltfm",
]
