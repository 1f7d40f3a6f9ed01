"""The weights resolver: search order, modes, stamps, and no unpickling of code."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from benchmarks.plugins.weights import (
    RandomWeightsWarning,
    WeightsNotFoundError,
    WeightSpec,
    WeightsResolver,
    load_state_dict,
)

SPEC = WeightSpec(key="tiny_net", library="timm", model_id="tiny_net.test", hf_repo="nobody/tiny_net-test")


def test_modes_and_stamp(tmp_path: Path) -> None:
    with pytest.warns(RandomWeightsWarning, match="RANDOM WEIGHTS"):
        auto = WeightsResolver(mode="auto", weights_dir=tmp_path, allow_download=False)
        assert auto.resolve(SPEC).mode == "random"
    assert auto.effective_mode == "random"
    with pytest.raises(WeightsNotFoundError, match="BENCHMARKS_WEIGHTS_DIR/tiny_net.safetensors"):
        WeightsResolver(mode="pretrained", weights_dir=tmp_path, allow_download=False).resolve(SPEC)
    save_file({"w": torch.ones(2)}, str(tmp_path / "tiny_net.safetensors"))
    found = WeightsResolver(mode="auto", weights_dir=tmp_path, allow_download=False)
    resolved = found.resolve(SPEC)
    assert resolved.mode == "pretrained" and resolved.path == tmp_path / "tiny_net.safetensors"
    assert found.effective_mode == "pretrained"
    assert WeightsResolver(mode="random", weights_dir=tmp_path).resolve(SPEC).mode == "random"
    assert torch.equal(load_state_dict(resolved.path)["w"], torch.ones(2))


class _Boom:
    def __reduce__(self):  # noqa: ANN204
        return (Path.touch, (Path(self.target),))


def test_malicious_pickle_does_not_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    boom = _Boom()
    boom.target = str(marker)  # type: ignore[attr-defined]
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as handle:
        pickle.dump({"state_dict": boom}, handle)
    with pytest.raises(pickle.UnpicklingError):
        load_state_dict(evil)
    assert not marker.exists()


def test_no_unsafe_torch_load_in_the_code() -> None:
    root = Path(__file__).resolve().parent.parent
    offenders = []
    for folder in ("benchmarks", "baselines", "ltfm"):
        for path in (root / folder).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), start=1):
                unsafe = re.search(r"(?<![\w.])torch\.load\(", line)  # not safetensors.torch.load (no pickle)
                if unsafe and "weights_only=True" not in line:
                    offenders.append(f"{path.relative_to(root)}:{number}")
    assert not offenders, offenders
