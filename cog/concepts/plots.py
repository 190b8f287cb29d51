"""The level-similarity figure and table: how close each level's concepts are to
the seen classes (drawn by `cog-build-levels` and the report).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cog import CogError

LEVEL_COLORS = ("#1b9e77", "#66a61e", "#e6ab02", "#d95f02", "#7570b3", "#e7298a", "#a6761d")
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def read_level_similarity(folder: str | Path) -> tuple[pd.DataFrame, str]:
    """Similarity and level per concept from a `cog-build-levels` folder: candidates.csv
    (the whole pool) or else levels.csv (the level members only); and which was read."""
    folder = Path(folder)
    for name in ("candidates.csv", "levels.csv"):
        p = folder / name
        if p.is_file():
            df = pd.read_csv(p, dtype={"wnid": str})
            if not {"similarity", "level"} <= set(df.columns):
                raise CogError(
                    f"{p}: needs 'similarity' and 'level' columns (as written by "
                    "cog-build-levels); rebuild the levels"
                )
            return df, name
    raise CogError(
        f"{folder}: holds neither candidates.csv nor levels.csv (written by cog-build-levels); "
        "pass the output folder of cog-build-levels with --levels"
    )


def level_similarity_table(candidates: pd.DataFrame) -> pd.DataFrame:
    """Per level: concepts and the range, mean and median of S(c)."""
    sel = candidates[candidates["level"] > 0]
    g = sel.groupby("level")["similarity"]
    out = pd.DataFrame(
        {
            "concepts": g.size(),
            "min": g.min(),
            "median": g.median(),
            "mean": g.mean(),
            "max": g.max(),
        }
    )
    out.index = [f"L{k}" for k in out.index]
    return out


def plot_level_similarity(
    candidates: pd.DataFrame, path: str | Path | None = None, pool_label: str = "eligible pool"
) -> plt.Figure:
    """S(c) per level: a histogram over the eligible pool (grey) with each level coloured,
    and a box per level (whiskers at min and max) where the levels are too narrow to read
    in the histogram. Saved as PNG and SVG when `path` is given; with only levels.csv,
    pass pool_label='all levels'."""
    elig = candidates[candidates["similarity"].notna()]
    bins = np.linspace(elig["similarity"].min(), elig["similarity"].max(), 61)
    n_levels = int(candidates["level"].max())
    per_level = [elig.loc[elig["level"] == k, "similarity"] for k in range(1, n_levels + 1)]
    colors = [LEVEL_COLORS[k % len(LEVEL_COLORS)] for k in range(n_levels)]
    with plt.rc_context(STYLE):
        fig, (ax, box) = plt.subplots(
            1, 2, figsize=(11, 4.5), width_ratios=(2, 1), layout="constrained"
        )
        ax.hist(elig["similarity"], bins=bins, color="0.85", label=f"{pool_label} ({len(elig)})")
        for k, (s, c) in enumerate(zip(per_level, colors, strict=True), start=1):
            label = f"L{k} ({len(s)}): {s.min():.3f}-{s.max():.3f}" if len(s) else f"L{k} (0)"
            ax.hist(s, bins=bins, color=c, alpha=0.85, label=label)
        ax.set_xlabel("S(c) = max Lin similarity to the seen concepts")
        ax.set_ylabel("concepts")
        ax.set_title("distribution over the pool")
        ax.legend(frameon=False, fontsize=8, loc="upper left")
        parts = box.boxplot(
            [s.to_numpy() for s in per_level],
            whis=(0, 100),
            patch_artist=True,
            widths=0.6,
            medianprops={"color": "black"},
        )
        for patch, c in zip(parts["boxes"], colors, strict=True):
            patch.set_facecolor(c)
        box.set_xticks(range(1, n_levels + 1), [f"L{k}" for k in range(1, n_levels + 1)])
        box.set_ylabel("S(c)")
        box.set_title("per level (box: quartiles, whiskers: range)")
        fig.suptitle("ImageNet-CoG levels: semantic similarity to the seen concepts")
    if path is not None:
        path = Path(path)
        fig.savefig(path, dpi=120)
        with plt.rc_context({"svg.hashsalt": "cog"}):
            fig.savefig(path.with_suffix(".svg"), metadata={"Date": None})
        plt.close(fig)
    return fig


def concept_path(reader, wnid: str, seen_wnid: str, ic: dict[str, float]) -> dict:
    """The WordNet route from a concept to a seen concept through their Lin subsumer.

    `reader` is an nltk WordNet reader (`cog.concepts.wordnet.load_wordnet()`), `ic` maps wnids to
    the information content used for the levels (ic.tsv of a levels folder). The subsumer
    is the common hypernym with the highest IC, as in Lin's measure; the route climbs
    hypernyms and instance hypernyms. Returns the route (synset names), the subsumer
    and the Lin similarity it gives."""

    def syn(w: str):
        try:
            return reader.synset_from_pos_and_offset("n", int(w[1:]))
        except Exception:
            raise CogError(f"{w}: not a WordNet 3.0 noun synset id (n + 8 digits)") from None

    def wid(s) -> str:
        return f"n{s.offset():08d}"

    def climb(s, goal) -> list:
        prev = {s: None}
        todo = [s]
        while todo:
            cur = todo.pop(0)
            if cur == goal:
                out = []
                while cur is not None:
                    out.append(cur)
                    cur = prev[cur]
                return out[::-1]
            for p in cur.hypernyms() + cur.instance_hypernyms():
                if p not in prev:
                    prev[p] = cur
                    todo.append(p)
        raise CogError(f"{goal.name()} is not a hypernym of {s.name()}")

    a, b = syn(wnid), syn(seen_wnid)
    common = [c for c in a.common_hypernyms(b) if wid(c) in ic]
    if not common:
        raise CogError(f"{wnid} and {seen_wnid}: no common hypernym has an IC value in `ic`")
    lcs = max(common, key=lambda c: (ic[wid(c)], c.name()))
    up, down = climb(a, lcs), climb(b, lcs)
    denom = ic.get(wid(a), np.nan) + ic.get(wid(b), np.nan)
    return {
        "path": [s.name() for s in up] + [s.name() for s in down[::-1][1:]],
        "subsumer": lcs.name(),
        "lin": float(2 * ic[wid(lcs)] / denom) if denom else float("nan"),
    }
