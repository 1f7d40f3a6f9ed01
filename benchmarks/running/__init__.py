"""Running a grid: the run configuration and presets, the runner and its executors, one cell, latency and the environment record."""
