"""The QC page: one self-contained HTML file (images embedded, no network, opens from a file URL)
and a JSON file with the same content, from the readings of a saved model."""

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

from benchmarks.inspection.readings import Reading
from benchmarks.results.models import SavedModel

THUMB_EDGE = 360
OVERLAY_ALPHA = 0.45
BOX_COLOR = (0, 229, 255)
TRUTH_COLOR = (255, 214, 0)
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
        "images": [_image_json(r) for r in readings],
    }


def _image_json(r: Reading) -> dict[str, Any]:
    out: dict[str, Any] = {"name": r.image.name, "path": str(r.image.path) if r.image.path else None}
    if r.error is not None:
        return out | {"error": r.error}
    out |= {"score": r.score, "verdict": verdict_word(r), "severity": r.severity, "location": r.location,
            "region": list(r.region) if r.region else None, "normal_share": r.normal_share,
            "anomaly_share": r.anomaly_share, "size": list(r.size) if r.size else None}
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
.card img {{ max-width: {THUMB_EDGE}px; max-height: {THUMB_EDGE}px; margin-right: 6px; }}
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
{correct}
<tr><th>Produced</th><td>{_e(data['created'])} on {_e(model['hardware'])}</td></tr>
</table>
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


def _image_slots(r: Reading) -> list[str]:
    if r.error is not None or r.pixels is None:
        return []
    return ["overlay", "truth"] if r.truth is not None else ["overlay"]


def _card(r: Reading, item: dict[str, Any]) -> str:
    if r.error is not None:
        return (f'<div class="card failed" data-name="{_e(r.image.name)}"><div class="text"><div class="verdict">'
                f'could not read {_e(r.image.name)}</div><div class="small error">{_e(r.error)}</div></div></div>')
    word = verdict_word(r)
    images = f'<img class="reading" alt="{_e(r.image.name)}: map overlay" src="{_png(_overlay(r))}">'
    if r.truth is not None:
        images += f'<img class="reading" alt="{_e(r.image.name)}: ground truth" src="{_png(_truth(r))}">'
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
    return f"""<div class="card{flagged}" data-name="{_e(r.image.name)}" data-verdict="{_e(word)}">
<div>{images}</div>
<div class="text"><div class="verdict {_e(word)}">{_e(word)}{severity}</div>
<div>{_e(r.image.name)}: score {r.score:.4g}; {_e('; '.join(position) or 'no validation scale')}</div>
<div class="small">most anomalous region: {_e(r.location or '–')}{_e(', box ' + ','.join(map(str, r.region)) if r.region else '')}</div>
{truth}</div></div>"""


def _thumb(pixels: np.ndarray) -> Image.Image:
    image = Image.fromarray(pixels)
    image.thumbnail((THUMB_EDGE, THUMB_EDGE))
    return image


def _overlay(r: Reading) -> Image.Image:
    assert r.pixels is not None
    image = _thumb(r.pixels).convert("RGB")
    if r.anomaly_map is not None:
        heat = r.anomaly_map
        span = float(heat.max() - heat.min()) or 1.0
        rgba = colormaps["inferno"]((heat - heat.min()) / span)
        colored = Image.fromarray((rgba[..., :3] * 255).astype(np.uint8)).resize(image.size, Image.Resampling.BILINEAR)
        image = Image.blend(image, colored, OVERLAY_ALPHA)
    if r.region is not None and r.size is not None:
        sx, sy = image.size[0] / r.size[0], image.size[1] / r.size[1]
        x0, y0, x1, y1 = r.region
        ImageDraw.Draw(image).rectangle([x0 * sx, y0 * sy, x1 * sx - 1, y1 * sy - 1], outline=BOX_COLOR, width=2)
    return image


def _truth(r: Reading) -> Image.Image:
    assert r.pixels is not None and r.truth is not None
    image = _thumb(r.pixels).convert("RGB")
    mask = np.asarray(Image.fromarray(r.truth.astype(np.uint8) * 255).resize(image.size, Image.Resampling.NEAREST)) > 0
    outline = mask & ~ndimage.binary_erosion(mask, iterations=2)
    pixels = np.asarray(image).copy()
    pixels[outline] = TRUTH_COLOR
    return Image.fromarray(pixels)


def _png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
