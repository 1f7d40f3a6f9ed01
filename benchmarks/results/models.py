"""Fitted models saved by `run --save-models`: `<run>/models/<cell_key>/` holds `state.safetensors`
(the method's `FittedState.tensors`) and `model.json` (`SavedModel`: what the model is and how it
was fitted, with the validation threshold and score distributions an inspection needs).

No pickle anywhere: tensors through safetensors, everything else JSON. The folder is written under
a temporary name and renamed, so a crash never leaves half a model.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from benchmarks.plugins.contract import FittedState

MODELS_DIR = "models"
STATE_FILE = "state.safetensors"
STAMP_FILE = "model.json"
MODEL_FORMAT = "benchmarks-model/1"


@dataclass(frozen=True)
class SavedModel:
    """The stamp of a saved model (`model.json`).

    `weights` / `weights_tag` / `weights_detail` say whether the backbone was pretrained, the
    bundled substitute or random; `threshold` is the F1-optimal threshold chosen on validation
    (`threshold_source`); `val_normal_scores` / `val_anomaly_scores` are the validation split's
    scores, the scale a new image's score is read against. `info` is the method's own
    `FittedState.info`.
    """

    cell_key: str
    method: str
    variant: str
    dataset: str
    seed: int
    preset: str
    options: Mapping[str, Any]
    weights: str
    weights_tag: str
    weights_detail: tuple[Mapping[str, Any], ...]
    threshold: float | None
    threshold_source: str
    val_normal_scores: tuple[float, ...]
    val_anomaly_scores: tuple[float, ...]
    class_name: str
    description: str
    info: Mapping[str, Any] = field(default_factory=dict)
    roi_pooling: Mapping[str, Any] | None = None
    """`{"kind", "fraction"}` of the `MapPooling` when the cell's scores (threshold, validation scale)
    are ROI-guided: `inspect` then forms each image's score inside its region of interest too."""
    format: str = MODEL_FORMAT

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["weights_detail"] = [dict(d) for d in self.weights_detail]
        out["val_normal_scores"] = list(self.val_normal_scores)
        out["val_anomaly_scores"] = list(self.val_anomaly_scores)
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> SavedModel:
        if obj.get("format") != MODEL_FORMAT:
            raise ValueError(f"not a saved model of this suite (format {obj.get('format')!r}, expected {MODEL_FORMAT!r})")
        return cls(**{
            **obj,
            "weights_detail": tuple(dict(d) for d in obj.get("weights_detail", [])),
            "val_normal_scores": tuple(float(v) for v in obj.get("val_normal_scores", [])),
            "val_anomaly_scores": tuple(float(v) for v in obj.get("val_anomaly_scores", [])),
        })


def write_model(run_dir: Path, cell_key: str, tensors: bytes, stamp: SavedModel) -> Path:
    """Write `<run_dir>/models/<cell_key>/` atomically (replacing an older save); returns the folder.

    `tensors` is the state already serialised by safetensors (how the cell process hands it over);
    the method's `FittedState.info` travels in `stamp.info`."""
    target = Path(run_dir) / MODELS_DIR / cell_key
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{cell_key}."))
    try:
        (scratch / STATE_FILE).write_bytes(tensors)
        (scratch / STAMP_FILE).write_text(json.dumps(stamp.to_json(), indent=2, allow_nan=False) + "\n",
                                          encoding="utf-8")
        scratch.chmod(0o755)  # mkdtemp makes it private; a saved model is read by other users and tools
        for file in scratch.iterdir():
            file.chmod(0o644)
        if target.exists():
            shutil.rmtree(target)
        scratch.rename(target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return target


def read_model(folder: Path) -> tuple[FittedState, SavedModel]:
    """The state and stamp of a saved model folder; a clear error naming the folder when it is not one."""
    folder = Path(folder)
    stamp_path, state_path = folder / STAMP_FILE, folder / STATE_FILE
    if not stamp_path.is_file() or not state_path.is_file():
        raise FileNotFoundError(f"{folder} is not a saved model (needs {STAMP_FILE} and {STATE_FILE}); "
                                "save models with `python -m benchmarks run --save-models`")
    try:
        stamp = SavedModel.from_json(json.loads(stamp_path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, json.JSONDecodeError) as err:
        raise ValueError(f"{stamp_path}: {err}") from None
    tensors: dict[str, torch.Tensor] = load_file(str(state_path))
    return FittedState(tensors=tensors, info=stamp.info), stamp
