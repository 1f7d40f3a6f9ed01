"""Built-in method plugins. Each module registers its classes with `benchmarks.registry.BASELINES`.

A built-in module that fails to import (e.g. a missing optional dependency) is reported and
skipped, so the other methods still run.
"""

from __future__ import annotations

import importlib
import logging

log = logging.getLogger(__name__)

BUILTIN_MODULES = (
    "baselines.patchcore",
    "baselines.anomalib_adapter",
    "baselines.winclip",
    "baselines.dino_knn",
    "baselines.anomalygpt",
    "baselines.ltfm_plugin",
)

IMPORT_PROBLEMS: dict[str, str] = {}

for _module in BUILTIN_MODULES:
    try:
        importlib.import_module(_module)
    except ModuleNotFoundError as exc:
        if exc.name != _module:
            IMPORT_PROBLEMS[_module] = f"{type(exc).__name__}: {exc}"
            log.warning("built-in plugin %s failed to import: %s", _module, exc)
    except Exception as exc:
        IMPORT_PROBLEMS[_module] = f"{type(exc).__name__}: {exc}"
        log.warning("built-in plugin %s failed to import: %s", _module, exc)
