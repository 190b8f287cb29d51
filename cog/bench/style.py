"""How models and datasets look in every figure: labels, order, colours, markers.

Colours and markers come from a hash of the model name and family, so a model looks the
same in every figure whatever else is plotted.
"""

from __future__ import annotations

import colorsys
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cog.bench.leaderboard import dataset_order as _dataset_key
from cog.features.images import DATASETS  # noqa: F401 (re-exported)

FAMILIES = {
    "sup": "supervised",
    "a": "architecture",
    "s": "self-supervised",
    "r": "regularization",
    "d": "extra data",
    "local": "trained locally",
}
METRIC_LABELS = {
    "top1": "top-1 (%)",
    "top5": "top-5 (%)",
    "knn_top1": "kNN top-1 (%)",
    "alignment": "alignment",
    "uniformity": "uniformity",
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*")
LEVEL_RE = re.compile(r"^cog_l(\d+)$")


# ---------------------------------------------------------------- names and styles


def dataset_label(dataset: str) -> str:
    """'in1k' -> 'IN-1K', 'cog_l3' -> 'L3'; anything else unchanged."""
    if dataset == "in1k":
        return "IN-1K"
    m = LEVEL_RE.match(dataset)
    return f"L{m.group(1)}" if m else dataset


def dataset_order(datasets: Iterable[str]) -> list[str]:
    """IN-1K first, then the levels by number, then anything else by name (sorted by
    the leaderboard's key, `cog.bench.leaderboard.dataset_order`)."""
    return sorted(set(datasets), key=_dataset_key)


def family_order(groups: Iterable[str]) -> list[str]:
    known = list(FAMILIES)
    return sorted(set(groups), key=lambda g: (known.index(g) if g in known else len(known), g))


def family_title(group: str) -> str:
    return f"{group}: {FAMILIES[group]}" if group in FAMILIES else group


@dataclass(frozen=True)
class ModelStyle:
    color: str
    marker: str


def model_style(model: str, group: str) -> ModelStyle:
    """Colour and marker of a model, a pure function of its name and family.

    Hue, lightness and marker come from a sha256 of "group/model"; lightness stays at or
    below 0.5 so every line is readable on white. The supervised family gets greys.
    """
    h = int(hashlib.sha256(f"{group}/{model}".encode()).hexdigest(), 16)
    hue = (h % 3600) / 3600
    light = 0.32 + 0.18 * ((h >> 12) % 5) / 4
    sat = 0.0 if group == "sup" else 0.65 + 0.3 * ((h >> 16) % 3) / 2
    if group == "sup":
        light = 0.12 + 0.3 * ((h >> 12) % 4) / 3
    r, g, b = colorsys.hls_to_rgb(hue, light, sat)
    color = f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"
    return ModelStyle(color, MARKERS[(h >> 24) % len(MARKERS)])
