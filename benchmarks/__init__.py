"""Smartphone anomaly-detection benchmark suite: the harness."""

__version__ = "0.1.0"
