"""The QC page: one self-contained HTML file (images embedded, no network, opens from a file URL)
and a JSON file with the same content, from the readings of a saved model.

Per image: the capture as it is, the anomaly map beside it (with the region of interest and the
region box), a full-resolution crop of the region with the map's outline on it, and the ground
truth where it is known; the verdict, the likely defect kind and the region's size. The header
gives one verdict per unit (a phone with several images) and, where the images are labelled, the
page's own accuracy: box-hit rate, kind accuracy and size error."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from PIL import Image, ImageDraw
from scipy import ndimage

from benchmarks.inspection.defect_kinds import crop_bounds
from benchmarks.inspection.readings import Reading, page_accuracy
from benchmarks.results.models import SavedModel

THUMB_EDGE = 360
OVERLAY_ALPHA = 0.45
BOX_COLOR = (0, 229, 255)
TRUTH_COLOR = (255, 214, 0)
ROI_COLOR = (120, 200, 120)
CROP_EDGE = 240
KIND_METHOD = ("nearest labelled validation anomaly (MobileNetV2-IN1k descriptors of the region's crop, cosine "
               "similarity)")
STAMP_COLORS = {"pretrained": "#1b7837", "substitute": "#b35806", "random": "#c00000"}


@dataclass(frozen=True)
class PageFiles:
    html: Path
    json: Path


def write_qc_page(readings: Sequence[Reading], stamp: SavedModel, out_dir: Path, title: str,
                  hardware: str) -> PageFiles:
    """Write `<out_dir>/<name>.html` and `.json`; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    name = f"qc-{stamp.method}-{stamp.variant}".replace(":", "-")
    data = page_data(readings, stamp, title, hardware)
    json_path = out_dir / f"{name}.json"
    json_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    html_path = out_dir / f"{name}.html"
    html_path.write_text(render_html(readings, data), encoding="utf-8")
    return PageFiles(html_path, json_path)


def page_data(readings: Sequence[Reading], stamp: SavedModel, title: str, hardware: str) -> dict[str, Any]:
    """Everything the page shows, as plain JSON (the images themselves are only in the HTML)."""
    ok = [r for r in readings if r.error is None]
    labelled = [r for r in ok if r.image.label is not None and r.anomalous is not None]
    summary = {
        "images": len(readings), "read": len(ok), "errors": len(readings) - len(ok),
        "flagged": sum(bool(r.anomalous) for r in ok),
        "by_severity": {word: sum(r.severity == word for r in ok) for word in dict.fromkeys(
            r.severity for r in ok if r.severity)},
        "by_location": {word: sum(r.location == word for r in ok) for word in dict.fromkeys(
            r.location for r in ok if r.location)},
    }
    if labelled:
        summary["correct"] = sum(bool(r.anomalous) == bool(r.image.label) for r in labelled)
        summary["labelled"] = len(labelled)
    summary["roi_scored"] = sum(r.roi_scored for r in ok)
    return {
        "title": title,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {
            "method": stamp.method, "variant": stamp.variant, "cell": stamp.cell_key, "dataset": stamp.dataset,
            "seed": stamp.seed, "preset": stamp.preset, "weights": stamp.weights, "weights_tag": stamp.weights_tag,
            "weights_detail": [dict(d) for d in stamp.weights_detail], "threshold": stamp.threshold,
            "threshold_source": stamp.threshold_source, "val_normals": len(stamp.val_normal_scores),
            "val_anomalies": len(stamp.val_anomaly_scores), "hardware": hardware,
        },
        "summary": summary,
        "accuracy": page_accuracy(readings),
        "kind_method": KIND_METHOD,
        "units": unit_verdicts(readings),
        "images": [_image_json(r) for r in readings],
    }


def unit_verdicts(readings: Sequence[Reading]) -> list[dict[str, Any]]:
    """One verdict per unit (images sharing `InspectedImage.unit`): anomalous when any image is, with
    the image of the highest score; units of one image are listed too. Empty without units."""
    units: dict[str, list[Reading]] = {}
    for r in readings:
        if r.image.unit is not None:
            units.setdefault(r.image.unit, []).append(r)
    out = []
    for unit, members in sorted(units.items()):
        read = [r for r in members if r.error is None and r.score is not None]
        worst = max(read, key=lambda r: float(r.score or 0.0)) if read else None
        flags = [r.anomalous for r in read]
        verdict = ("unreadable" if not read else "no threshold" if any(f is None for f in flags)
                   else "ANOMALOUS" if any(flags) else "normal")
        out.append({"unit": unit, "images": len(members), "read": len(read), "verdict": verdict,
                    "flagged": sum(bool(f) for f in flags), "worst": worst.image.name if worst else None,
                    "worst_score": worst.score if worst else None,
                    "worst_kind": worst.kind if worst and worst.anomalous else None})
    return out


def _image_json(r: Reading) -> dict[str, Any]:
    out: dict[str, Any] = {"name": r.image.name, "path": str(r.image.path) if r.image.path else None}
    if r.error is not None:
        return out | {"error": r.error}
    out |= {"score": r.score, "verdict": verdict_word(r), "severity": r.severity, "location": r.location,
            "region": list(r.region) if r.region else None, "normal_share": r.normal_share,
            "anomaly_share": r.anomaly_share, "size": list(r.size) if r.size else None,
            "kind": r.kind, "kind_similarity": r.kind_similarity, "region_px": r.size_px, "region_mm": r.size_mm,
            "roi_scored": r.roi_scored, "unit": r.image.unit}
    if r.image.label is not None:
        out |= {"label": r.image.label, "defect": r.image.defect,
                "correct": None if r.anomalous is None else bool(r.anomalous) == bool(r.image.label)}
    return out


def verdict_word(r: Reading) -> str:
    return "no threshold" if r.anomalous is None else "ANOMALOUS" if r.anomalous else "normal"


def render_html(readings: Sequence[Reading], data: dict[str, Any]) -> str:
    model, summary = data["model"], data["summary"]
    stamp_color = STAMP_COLORS.get(model["weights"], "#c00000")
    warning = {
        "random": "RANDOM WEIGHTS: this model's backbone is randomly initialised; its verdicts say nothing "
                  "about the images.",
        "substitute": f"SUBSTITUTE BACKBONE ({model['weights_tag']}): real pretrained features, but not the "
                      "method's own backbone; not the paper's model.",
    }.get(model["weights"], f"Pretrained weights ({model['weights_tag']}).")
    rows = "\n".join(_card(r, item) for r, item in zip(readings, data["images"], strict=True))
    threshold = "none" if model["threshold"] is None else f"{model['threshold']:.4g} ({model['threshold_source']})"
    severity = ", ".join(f"{k}: {v}" for k, v in summary["by_severity"].items()) or "–"
    locations = ", ".join(f"{k}: {v}" for k, v in summary["by_location"].items()) or "–"
    correct = (f"<tr><th>Verdicts matching the labels</th><td>{summary['correct']} of {summary['labelled']}</td></tr>"
               if "labelled" in summary else "")
    correct += _accuracy_rows(data["accuracy"])
    scored = (f"inside each image's region of interest ({summary['roi_scored']} of {summary['read']} images), as the "
              "run chose on validation" if summary["roi_scored"] else "over the whole image")
    units = _unit_table(data["units"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>{_e(data['title'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }}
.stamp {{ background: {stamp_color}; color: white; padding: 0.7em 1em; font-weight: bold; font-size: 1.1em; }}
table.summary td, table.summary th {{ text-align: left; padding: 0.15em 1em 0.15em 0; }}
.cards {{ display: flex; flex-wrap: wrap; gap: 1em; }}
.card {{ border: 1px solid #ccc; padding: 0.6em; }}
.card .text {{ max-width: {THUMB_EDGE}px; }}
.card.flagged {{ border: 2px solid #c00000; }} .card.failed {{ border: 2px dashed #888; }}
.card img {{ max-width: {THUMB_EDGE}px; max-height: {THUMB_EDGE}px; margin-right: 6px; vertical-align: top; }}
.card figure {{ display: inline-block; margin: 0 6px 0 0; }} .card figcaption {{ font-size: 0.8em; color: #555; }}
table.units td, table.units th {{ text-align: left; padding: 0.1em 0.8em 0.1em 0; }}
.verdict {{ font-weight: bold; font-size: 1.1em; }} .ANOMALOUS {{ color: #c00000; }} .normal {{ color: #1b7837; }}
.small {{ color: #555; font-size: 0.9em; }}
</style></head>
<body data-images-total="{sum(1 for r in readings for _ in _image_slots(r))}" data-images-rendered="0">
<h1>{_e(data['title'])}</h1>
<div class="stamp" id="weights-stamp">{_e(warning)}</div>
<table class="summary">
<tr><th>Model</th><td>{_e(model['method'])} / {_e(model['variant'])}, fitted on {_e(model['dataset'])} (cell {_e(model['cell'])}, preset {_e(model['preset'])}, seed {model['seed']})</td></tr>
<tr><th>Threshold</th><td>{_e(threshold)}; scale: {model['val_normals']} validation normals, {model['val_anomalies']} validation anomalies</td></tr>
<tr><th>Images</th><td>{summary['images']} ({summary['read']} read, {summary['errors']} could not be read), {summary['flagged']} flagged anomalous</td></tr>
<tr><th>Severity</th><td>{_e(severity)}</td></tr>
<tr><th>Where</th><td>{_e(locations)}</td></tr>
<tr><th>Scores and boxes</th><td>{_e(scored)}; defect kind: {_e(data['kind_method'])}</td></tr>
{correct}
<tr><th>Produced</th><td>{_e(data['created'])} on {_e(model['hardware'])}</td></tr>
</table>
{units}
<div class="cards">
{rows}
</div>
<script>
(function () {{
  var images = Array.prototype.slice.call(document.querySelectorAll("img.reading"));
  var done = 0, rendered = 0;
  function settle(img) {{
    done += 1;
    if (img.complete && img.naturalWidth > 0) {{ rendered += 1; img.dataset.rendered = "yes"; }}
    if (done === images.length) {{ document.body.dataset.imagesRendered = String(rendered); }}
  }}
  images.forEach(function (img) {{
    if (img.complete) {{ settle(img); }} else {{
      img.addEventListener("load", function () {{ settle(img); }});
      img.addEventListener("error", function () {{ settle(img); }});
    }}
  }});
  if (images.length === 0) {{ document.body.dataset.imagesRendered = "0"; }}
}})();
</script>
</body></html>
"""


def _accuracy_rows(accuracy: dict[str, Any]) -> str:
    """The page's own accuracy over its labelled anomalies, with what it was measured on."""
    if not accuracy.get("anomalies"):
        return ""

    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:.0f} %"

    mm = "" if accuracy["size_error_mm"] is None else f", {accuracy['size_error_mm']:.2f} mm"
    return (f"<tr><th>This page's accuracy</th><td>over {accuracy['anomalies']} labelled anomalies with masks: "
            f"box holds the defect {share(accuracy['box_hit_rate'])}; defect kind right "
            f"{share(accuracy['kind_accuracy'])} (of {accuracy.get('kinds_guessed', 0)} guessed); size error "
            f"(box's longer side vs the mask's) median {share(accuracy['size_error_rel'])}, "
            f"{accuracy['size_error_px']:.0f} px{mm}</td></tr>")


def _unit_table(units: list[dict[str, Any]]) -> str:
    if not units:
        return ""
    rows = "".join(
        f'<tr data-unit="{_e(u["unit"])}" data-verdict="{_e(u["verdict"])}"><td>{_e(u["unit"])}</td>'
        f'<td class="{_e(u["verdict"])}"><b>{_e(u["verdict"])}</b></td><td>{u["flagged"]} of {u["images"]} images '
        f'flagged</td><td>{_e(u["worst"] or "–")}' + (f' ({_e(u["worst_kind"])})' if u["worst_kind"] else "")
        + "</td></tr>" for u in units)
    return ('<h2>One verdict per unit</h2><table class="units"><tr><th>Unit</th><th>Verdict</th><th>Images</th>'
            f"<th>Most anomalous image</th></tr>{rows}</table>")


def _image_slots(r: Reading) -> list[str]:
    if r.error is not None or r.pixels is None:
        return []
    slots = ["capture", "map"] if r.anomaly_map is not None else ["capture"]
    if r.region is not None:
        slots.append("crop")
    return slots + (["truth"] if r.truth is not None else [])


def _card(r: Reading, item: dict[str, Any]) -> str:
    if r.error is not None:
        return (f'<div class="card failed" data-name="{_e(r.image.name)}"><div class="text"><div class="verdict">'
                f'could not read {_e(r.image.name)}</div><div class="small error">{_e(r.error)}</div></div></div>')
    word = verdict_word(r)
    panels = [("capture", "as captured", _capture(r))]
    if r.anomaly_map is not None:
        panels.append(("map", "anomaly map" + (", region of interest in green" if r.roi is not None else ""),
                       _map_panel(r)))
    if r.region is not None:
        panels.append(("crop", "region, full resolution, map outline", _crop_panel(r)))
    if r.truth is not None:
        panels.append(("truth", "ground truth", _truth(r)))
    images = "".join(f'<figure><img class="reading" data-slot="{slot}" alt="{_e(r.image.name)}: {_e(caption)}" '
                     f'src="{_png(image)}"><figcaption>{_e(caption)}</figcaption></figure>'
                     for slot, caption, image in panels)
    position = []
    if r.normal_share is not None:
        position.append(f"above {100 * r.normal_share:.0f} % of validation normals")
    if r.anomaly_share is not None:
        position.append(f"above {100 * r.anomaly_share:.0f} % of validation anomalies")
    truth = ""
    if r.image.label is not None:
        mark = "✓" if item.get("correct") else "✗"
        label = f"defect: {r.image.defect}" if r.image.label else "normal"
        truth = f'<div class="small">truth: {_e(label)} {mark}</div>'
    flagged = " flagged" if r.anomalous else ""
    severity = f" ({_e(r.severity)})" if r.severity else ""
    size = ""
    if r.size_px is not None:
        size = f"{r.size_px} px" + (f" ≈ {r.size_mm:.1f} mm" if r.size_mm is not None else " (no capture scale)")
    kind = (f"likely {_e(r.kind)} (similarity {r.kind_similarity:.2f} to the nearest labelled example)"
            if r.kind is not None else "kind: no labelled examples to compare with")
    unit = f'<div class="small">unit {_e(r.image.unit)}</div>' if r.image.unit is not None else ""
    return f"""<div class="card{flagged}" data-name="{_e(r.image.name)}" data-verdict="{_e(word)}">
<div>{images}</div>
<div class="text"><div class="verdict {_e(word)}">{_e(word)}{severity}</div>
<div>{_e(r.image.name)}: score {r.score:.4g}{' (inside the region of interest)' if r.roi_scored else ''}; {_e('; '.join(position) or 'no validation scale')}</div>
<div class="small">region: {_e(r.location or '–')}{_e(', box ' + ','.join(map(str, r.region)) if r.region else '')}{_e(', ' + size if size else '')}</div>
<div class="small">{kind}</div>
{unit}{truth}</div></div>"""


def _thumb(pixels: np.ndarray) -> Image.Image:
    image = Image.fromarray(pixels)
    image.thumbnail((THUMB_EDGE, THUMB_EDGE))
    return image


def _capture(r: Reading) -> Image.Image:
    """The capture as it is, only scaled to fit."""
    assert r.pixels is not None
    return _thumb(r.pixels).convert("RGB")


def _heat(values: np.ndarray, size: tuple[int, int]) -> Image.Image:
    span = float(values.max() - values.min()) or 1.0
    rgba = colormaps["inferno"]((values - values.min()) / span)
    return Image.fromarray((rgba[..., :3] * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)


def _outline(mask: np.ndarray, width: int = 1) -> np.ndarray:
    return mask & ~ndimage.binary_erosion(mask, iterations=width)


def _map_panel(r: Reading) -> Image.Image:
    """The map beside the capture (same size), the ROI's outline and the region box on it."""
    assert r.pixels is not None and r.anomaly_map is not None
    size = _thumb(r.pixels).size
    image = _heat(r.anomaly_map, size)
    if r.roi is not None:
        roi = np.asarray(Image.fromarray(r.roi.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)) > 0
        pixels = np.asarray(image).copy()
        pixels[_outline(roi)] = ROI_COLOR
        image = Image.fromarray(pixels)
    if r.region is not None and r.size is not None:
        sx, sy = size[0] / r.size[0], size[1] / r.size[1]
        x0, y0, x1, y1 = r.region
        ImageDraw.Draw(image).rectangle([x0 * sx, y0 * sy, x1 * sx - 1, y1 * sy - 1], outline=BOX_COLOR, width=2)
    return image


def _crop_panel(r: Reading) -> Image.Image:
    """A full-resolution crop around the region box with the contour of the map's region on it (the map
    at half the range it spans inside the box): the defect itself stays visible."""
    assert r.pixels is not None and r.region is not None and r.anomaly_map is not None
    h, w = r.pixels.shape[:2]
    full_map = np.asarray(Image.fromarray(r.anomaly_map.astype(np.float32)).resize((w, h), Image.Resampling.BILINEAR))
    x0, y0, x1, y1 = r.region
    inside_box = full_map[max(0, y0):y1, max(0, x0):x1]
    level = float(inside_box.min()) + 0.5 * float(inside_box.max() - inside_box.min()) if inside_box.size else 0.0
    top, bottom, left, right = crop_bounds((h, w), r.region)
    pixels = r.pixels[top:bottom, left:right].copy()
    pixels[_outline(full_map[top:bottom, left:right] >= level)] = BOX_COLOR  # the blob's contour, not the box
    image = Image.fromarray(pixels).convert("RGB")
    if max(image.size) > CROP_EDGE:  # only ever shrunk to fit; a small crop keeps its pixels 1:1
        image.thumbnail((CROP_EDGE, CROP_EDGE), Image.Resampling.NEAREST)
    return image


def _truth(r: Reading) -> Image.Image:
    assert r.pixels is not None and r.truth is not None
    image = _thumb(r.pixels).convert("RGB")
    mask = np.asarray(Image.fromarray(r.truth.astype(np.uint8) * 255).resize(image.size, Image.Resampling.NEAREST)) > 0
    pixels = np.asarray(image).copy()
    pixels[_outline(mask, 2)] = TRUTH_COLOR
    return Image.fromarray(pixels)


def _png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
