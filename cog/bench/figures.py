"""The report's figures; each returns a `Plot` (the figure, the table it drew, notes).

Tests and notebooks check the numbers, not only that an image exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cog.bench.style import (
    METRIC_LABELS,
    dataset_label,
    dataset_order,
    family_order,
    family_title,
    model_style,
)
from cog.bench.tables import _long, relative_table
from cog.concepts.plots import STYLE
from cog.io import atomic_write

# ---------------------------------------------------------------- figures


@dataclass
class Plot:
    """A figure, the table of what it drew (one row per plotted point) and notes."""

    figure: plt.Figure
    data: pd.DataFrame
    notes: list[str] = field(default_factory=list)


def _empty(fig: plt.Figure, ax: plt.Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def _suptitle(fig: plt.Figure, text: str) -> None:
    """A figure title wrapped to the figure's width, so one-panel figures are not clipped."""
    import textwrap

    chars = max(30, int(fig.get_figwidth() * 72 / (STYLE["font.size"] * 0.62)))
    fig.suptitle(textwrap.fill(text, chars))


def _percent(metric: str) -> bool:
    return metric in ("top1", "top5", "knn_top1") or metric.endswith("top1")


def _grid(n: int, max_cols: int, w: float, h: float) -> tuple[plt.Figure, list[plt.Axes]]:
    cols = max(1, min(n, max_cols))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(w * cols, h * rows), squeeze=False, layout="constrained"
    )
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_axis_off()
    return fig, flat


def _errorbars(
    ax: plt.Axes,
    df: pd.DataFrame,
    cols: tuple[str, str, str],
    label: str,
    grid: Sequence[float],
    dx: float = 0.0,
    bounds: tuple[float, float] | None = None,
) -> None:
    """One model's series with error bars; reindexed on `grid` so a missing point breaks
    the line instead of joining its neighbours. With `bounds`, bars stop at the valid range."""
    x, y, err = cols
    st = model_style(df["model"].iloc[0], df["group"].iloc[0])
    d = df.set_index(x)[[y, err]].reindex(list(grid))
    yerr: object = d[err]
    if bounds is not None:  # a bar past 0% or 100% would show impossible scores
        lo, hi = bounds
        below = np.minimum(d[err], d[y] - lo).clip(lower=0)
        yerr = np.vstack([below, np.minimum(d[err], hi - d[y]).clip(lower=0)])
    ax.errorbar(
        np.asarray(d.index, dtype=float) + dx,
        d[y],
        yerr=yerr,
        color=st.color,
        marker=st.marker,
        markersize=5,
        linewidth=1.4,
        capsize=2.5,
        label=label,
    )


def plot_relative(
    lb: pd.DataFrame, baseline: str, *, metric: str = "top1", protocol: str = "fast"
) -> Plot:
    """The paper's main figure: per dataset, each model's score minus the baseline's
    (points), one panel per family, error bars from the seed spread."""
    data, notes = relative_table(lb, baseline)
    with plt.rc_context(STYLE):
        datasets = dataset_order(lb["dataset"])
        xpos = {d: i for i, d in enumerate(datasets)}
        data["x"] = data["dataset"].map(xpos)
        groups = family_order(data["group"])
        fig, axes = _grid(max(len(groups), 1), 3, 5.0, 4.4)
        if data.empty:
            _empty(fig, axes[0], f"no results to compare with {baseline}")
        for ax, g in zip(axes, groups, strict=False):
            sub = data[data["group"] == g]
            names = sorted(set(sub["model"]))
            for k, m in enumerate(names):
                dx = 0.24 * (k / max(len(names) - 1, 1) - 0.5) if len(names) > 1 else 0.0
                one = sub[sub["model"] == m]
                _errorbars(ax, one, ("x", "delta", "err"), m, range(len(datasets)), dx)
            ax.axhline(
                0, color="black", linewidth=1.0, linestyle="--", label=f"{baseline} (baseline)"
            )
            ax.set_xticks(range(len(datasets)), [dataset_label(d) for d in datasets])
            ax.set_xlim(-0.5, len(datasets) - 0.5)
            ax.set_title(f"{family_title(g)} ({len(names)} model{'s' * (len(names) > 1)})")
            ax.set_ylabel(f"Δ {METRIC_LABELS.get(metric, metric)} vs {baseline} (points)")
            ax.legend(
                fontsize=7,
                ncol=2 if len(names) > 4 else 1,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.1),
                frameon=False,
            )
        for ax in axes[len(groups) :]:
            ax.set_axis_off()
        if len(groups) > 1:
            lo, hi = data["delta"].sub(data["err"]).min(), data["delta"].add(data["err"]).max()
            pad = 0.06 * max(hi - lo, 1.0)
            for ax in axes[: len(groups)]:
                ax.set_ylim(min(lo, 0) - pad, max(hi, 0) + pad)
        _suptitle(
            fig,
            f"{METRIC_LABELS.get(metric, metric)} relative to {baseline} per level "
            f"({protocol} protocol; error bars: spread over seeds)",
        )
    return Plot(fig, data.drop(columns="x"), notes)


def plot_absolute(
    lb: pd.DataFrame,
    models: Sequence[str] | None = None,
    *,
    metric: str = "top1",
    protocol: str = "fast",
    chance: dict[str, float] | None = None,
) -> Plot:
    """Score against level for the chosen models (one line each, seed std as error bars,
    clipped to 0-100 for percentages); `chance` (dataset -> score) draws the chance level."""
    data = _long(lb, models)
    bounds = (0.0, 100.0) if _percent(metric) else None
    with plt.rc_context(STYLE):
        datasets = dataset_order(lb["dataset"] if models is None else data["dataset"])
        xpos = {d: i for i, d in enumerate(datasets)}
        fig, ax = plt.subplots(figsize=(8.5, 4.8), layout="constrained")
        if data.empty:
            _empty(fig, ax, "no results for the chosen models")
        for m in dict.fromkeys(data["model"]):
            sub = data[data["model"] == m].assign(x=lambda d: d["dataset"].map(xpos))
            lab = f"{m} [{sub['group'].iloc[0]}]"
            _errorbars(ax, sub, ("x", "mean", "std"), lab, range(len(datasets)), bounds=bounds)
        for d, c in (chance or {}).items():
            if d in xpos:
                ax.hlines(c, xpos[d] - 0.3, xpos[d] + 0.3, colors="grey", linestyles=":")
        if chance and set(chance) & set(xpos):
            ax.plot([], [], color="grey", linestyle=":", label="chance (k / classes)")
        if not data.empty:
            ax.set_xticks(range(len(datasets)), [dataset_label(d) for d in datasets])
            ax.set_xlim(-0.4, len(datasets) - 0.6)
            ax.set_xlabel("dataset (L1 closest to ImageNet-1K, L5 farthest)")
            ax.set_ylabel(METRIC_LABELS.get(metric, metric))
            ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        ax.set_title(f"{METRIC_LABELS.get(metric, metric)} per level ({protocol} protocol)")
    return Plot(fig, data.drop(columns="n_shot"), [])


def plot_few_shot(
    lb_few: pd.DataFrame,
    models: Sequence[str] | None = None,
    *,
    metric: str = "top1",
    protocol: str = "fast",
    chance: dict[str, float] | None = None,
) -> Plot:
    """Few-shot curves: score against N (log2 axis), one panel per dataset; error bars
    clipped to 0-100 for percentages; `chance` (dataset -> score) draws the chance level."""
    data = _long(lb_few, models)
    bounds = (0.0, 100.0) if _percent(metric) else None
    with plt.rc_context(STYLE):
        datasets = dataset_order(data["dataset"])
        fig, axes = _grid(max(len(datasets), 1), 3, 4.2, 3.6)
        if data.empty:
            _empty(fig, axes[0], "no few-shot results for the chosen models")
        handles: dict[str, object] = {}
        for ax, d in zip(axes, datasets, strict=False):
            sub = data[data["dataset"] == d]
            ns = sorted(set(sub["n_shot"]))
            for m in dict.fromkeys(sub["model"]):
                _errorbars(
                    ax, sub[sub["model"] == m], ("n_shot", "mean", "std"), m, ns, bounds=bounds
                )
            if d in (chance or {}):
                ax.axhline(chance[d], color="grey", linestyle=":", label="chance (k / classes)")
            ax.set_xscale("log", base=2)
            ax.set_xticks(ns, [str(n) for n in ns])
            ax.minorticks_off()
            ax.set_title(dataset_label(d))
            ax.set_xlabel("N training images per concept")
            ax.set_ylabel(METRIC_LABELS.get(metric, metric))
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                handles.setdefault(lab, h)
        if handles:
            groups = data.groupby("model")["group"].first()
            fig.legend(
                list(handles.values()),
                [f"{m} [{groups[m]}]" if m in groups else m for m in handles],
                loc="outside right center",
                fontsize=8,
                frameon=False,
            )
        _suptitle(fig, f"Few-shot {METRIC_LABELS.get(metric, metric)} ({protocol} protocol)")
    return Plot(fig, data, [])


def save_figure(fig: plt.Figure, stem: Path, formats: Sequence[str] = ("png", "svg")) -> list[Path]:
    """Write `fig` as stem.<fmt> for each format, each file atomically, without dates
    in the metadata so reruns give identical vector files."""
    out = []
    meta = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}
    for fmt in formats:
        p = stem.with_suffix(f".{fmt}")
        with atomic_write(p, "wb") as f, plt.rc_context({"svg.hashsalt": "cog"}):
            fig.savefig(f, format=fmt, dpi=150, metadata=meta.get(fmt))
        out.append(p)
    return out
