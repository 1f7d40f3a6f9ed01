"""The embedded `smartphone-synth` benchmark (SPEC 3.2): procedural phone photos with defects.

designs.py holds the devices of each generation year, screens.py what their displays show, render.py
the capture protocols and renderer, defects.py the defects and hard negatives,
generate.py writes the dataset (`generate_smartphone_synth`, `cached_smartphone_synth`). Nothing is
imported here, so that `benchmarks.data.augment` can use the drawing helpers without a cycle.
"""
