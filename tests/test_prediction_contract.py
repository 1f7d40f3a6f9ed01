"""`Prediction.check`: typed answers are held to the contract like scores and maps."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.plugins.contract import Prediction


def test_typed_answers_pass_when_well_formed() -> None:
    Prediction(scores=np.zeros(3), decisions=[True, None, False], locations=["top left", None, "center"]).check(3)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"decisions": [True, False]}, "2 decisions for 3 images"),
        ({"decisions": [1, 0, 1]}, "True, False or None"),
        ({"locations": ["top", "middle", None]}, "3x3 grid words"),
        ({"locations": ["top"]}, "1 locations for 3 images"),
    ],
)
def test_malformed_answers_are_named(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Prediction(scores=np.zeros(3), **fields).check(3)  # type: ignore[arg-type]
