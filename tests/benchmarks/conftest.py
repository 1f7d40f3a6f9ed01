"""Micro-benchmarks of the suite's own hot paths (pytest-benchmark); not part of CI or the default run.

`pyproject.toml` keeps this folder out of `pytest` (`--ignore=tests/benchmarks`). Run them with
`tox -e bench`, or one file at a time:

    .venv/bin/pytest tests/benchmarks/test_knn_bench.py --benchmark-only -q

The kNN file needs about 5 GB of memory and a few minutes on 2 cores. Each benchmark also checks
its result, so a fast but wrong path fails. There is deliberately no `__init__.py` here: as a
package this folder would be named `benchmarks` and shadow the harness package.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

FeatureMaker = Callable[[int, int, int], np.ndarray]


def low_rank_features(rows: int, dim: int, seed: int, latent: int = 16) -> np.ndarray:
    """`(rows, dim)` float32 rows on a shared `latent`-dim manifold: `relu(z @ mix) + 0.05 noise`.

    Like CNN patch features they are non-negative with a low intrinsic dimension, so k-means
    lists stay balanced (iid Gaussian rows would leave an IVF index nothing to exploit). `mix`
    is the same for every seed: bank and queries come from one distribution.
    """
    mix = np.random.default_rng(1234).standard_normal((latent, dim), dtype=np.float32)
    rng = np.random.default_rng(seed)
    out = np.empty((rows, dim), dtype=np.float32)
    for start in range(0, rows, 20_000):  # bounded temporaries at 200k x 1536
        part = out[start : start + 20_000]
        np.maximum(rng.standard_normal((len(part), latent), dtype=np.float32) @ mix, 0.0, out=part)
        part += np.float32(0.05) * rng.standard_normal(part.shape, dtype=np.float32)
    return out


@pytest.fixture(scope="session")
def features() -> FeatureMaker:
    """`low_rank_features` as a fixture (benchmark modules cannot import this conftest)."""
    return low_rank_features
