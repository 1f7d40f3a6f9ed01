"""Smartphone anomaly-detection benchmark suite: the harness."""

import warnings

__version__ = "0.1.0"

# Deprecation chatter that timm and anomalib print at import in every cell process; it says
# nothing about the benchmark and buries the random-weights warnings that do.
warnings.filterwarnings("ignore", message="Importing from timm.models.layers is deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message="The anomalib.models.components.dinov2 package is deprecated",
                        category=FutureWarning)
