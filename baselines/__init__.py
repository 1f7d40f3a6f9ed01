"""Built-in method plugins, one module per method.

They register exactly as outside plugins do: through the `benchmarks.baselines` (and, for
`anomalib:<Model>`, `benchmarks.method_families`) entry points in the project's pyproject, and
they import only `benchmarks.api` of the harness.
"""
