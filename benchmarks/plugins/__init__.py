"""What a plugin sees of the harness: the contract, the registry, options, weights, the feature cache and the location grid.

Plugins import these through `benchmarks.api`, never from here directly."""
