"""`data import SRC --out DIR`: a defect dataset as it is published -> a manifest with a declared split.

One module per stage: `layouts` (which folder layout, which items), `annotations` (COCO, Labelme and
YOLO regions), `protocol` (release years, generated and hard-negative folders), `checking` (every
file decoded), `split_rule` (the seeded, recorded split and its guarantees), `writer` (files, masks,
manifest rows); `pipeline` runs them in that order. docs/data-import.md is the user's guide.
"""

from benchmarks.data.importer.items import Item, Scan
from benchmarks.data.importer.layouts import LAYOUTS, LayoutRequest, detect_layout
from benchmarks.data.importer.pipeline import ImportResult, describe, import_dataset

__all__ = ["LAYOUTS", "ImportResult", "Item", "LayoutRequest", "Scan", "describe", "detect_layout", "import_dataset"]
