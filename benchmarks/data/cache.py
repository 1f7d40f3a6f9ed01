"""Where embedded datasets and other derived files are cached on disk."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$BENCHMARKS_CACHE`, else `~/.cache/smartphone-benchmarks`."""
    return Path(os.environ.get("BENCHMARKS_CACHE", Path.home() / ".cache" / "smartphone-benchmarks"))
