"""Figures for people to look at. Levels: the Lin-similarity distribution per level."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

LEVEL_COLORS = ("#1b9e77", "#66a61e", "#e6ab02", "#d95f02", "#7570b3", "#e7298a", "#a6761d")


def plot_level_similarity(candidates: pd.DataFrame, path: str | Path) -> plt.Figure:
    """Histogram of S(c) per level over the eligible pool (grey); saved as PNG and SVG."""
    elig = candidates[candidates["similarity"].notna()]
    bins = np.linspace(elig["similarity"].min(), elig["similarity"].max(), 61)
    fig, ax = plt.subplots(figsize=(8, 4.5), constrained_layout=True)
    ax.hist(elig["similarity"], bins=bins, color="0.85", label=f"eligible pool ({len(elig)})")
    n_levels = int(candidates["level"].max())
    for k in range(1, n_levels + 1):
        s = elig.loc[elig["level"] == k, "similarity"]
        ax.hist(
            s,
            bins=bins,
            color=LEVEL_COLORS[(k - 1) % len(LEVEL_COLORS)],
            alpha=0.85,
            label=f"L{k} ({len(s)}): {s.min():.3f}-{s.max():.3f}",
        )
    ax.set_xlabel("S(c) = max Lin similarity to the seen concepts")
    ax.set_ylabel("concepts")
    ax.set_title("ImageNet-CoG levels: semantic similarity to the seen set")
    ax.legend(frameon=False, fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=120)
    fig.savefig(path.with_suffix(".svg"))
    plt.close(fig)
    return fig
