"""The levels as files and a report: the mapping file, the summary table and the
markdown page `cog-build-levels` writes beside them.
"""

from __future__ import annotations

import json
import pickle
import platform
import sys
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

import cog
from cog.concepts.ic import (
    InformationContent,
)
from cog.concepts.levels import BINS_ROUNDING, MAPPING_FILE, LevelsComparison, LevelsResult
from cog.io import atomic_output_dir

# ---------------------------------------------------------------- writing a build


def _versions() -> dict[str, str]:
    import matplotlib
    import nltk

    return {
        "cog": cog.__version__,
        "python": platform.python_version(),
        "nltk": nltk.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "matplotlib": matplotlib.__version__,
    }


def write_levels(result: LevelsResult, out_dir: str | Path) -> Path:
    """Write every output of a build into `out_dir`, atomically (all files or none)."""
    from cog.concepts.plots import plot_level_similarity

    cfg = result.config
    with atomic_output_dir(out_dir) as tmp:
        result.table.to_csv(tmp / "levels.csv", index=False, float_format="%.6f")
        result.candidates.to_csv(tmp / "candidates.csv", index=False, float_format="%.6f")
        with open(tmp / MAPPING_FILE, "wb") as f:
            pickle.dump(result.levels, f, protocol=4)
        result.ic_table.to_csv(tmp / "ic.tsv", sep="\t", index=False, float_format="%.10g")
        if cfg.imagenet_root is not None and result.image_counts is not None:
            pd.DataFrame(sorted(result.image_counts.items()), columns=["wnid", "images"]).to_csv(
                tmp / "image_counts.tsv", sep="\t", index=False
            )
        plot_level_similarity(result.candidates, tmp / "similarity.png")
        provenance = {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()},
            "inputs": result.inputs,
            "wordnet": {"version": "3.0", "source": result.wordnet_source},
            "information_content": _ic_record(result.ic),
            "steps": [asdict(s) for s in result.steps],
            "cut": _cut_record(result),
            "warnings": result.warnings,
            "levels": [
                {"level": k, "size": len(lv)} for k, lv in enumerate(result.levels, start=1)
            ],
            "versions": _versions(),
            "seconds": round(result.seconds, 2),
        }
        if result.comparison is not None:
            provenance["comparison"] = result.comparison.as_dict()
        (tmp / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
        (tmp / "report.md").write_text(render_report(result))
    return Path(out_dir)


def _ic_record(ic: InformationContent) -> dict:
    rec: dict = {"name": ic.name, "description": ic.description}
    if ic.tree is not None:
        rec["tree"] = {"what": ic.tree.what, "nodes": ic.tree.size}
    return rec


def _cut_record(result: LevelsResult) -> dict:
    cfg = result.config
    rec: dict = {"rule": cfg.cut, "levels": cfg.n_levels, "level_size": cfg.level_size}
    if result.bins is not None:
        rec["seed"] = cfg.seed
        rec["generator"] = "numpy.random.default_rng(seed).choice per bin, no replacement"
        rec["rounding"] = BINS_ROUNDING
        rec["bins"] = result.bins.to_dict(orient="records")
    return rec


def _show(path: object) -> str:
    """A path as a reader wants it in a report: relative to the current folder if inside."""
    try:
        return str(Path(str(path)).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _md_table(df: pd.DataFrame) -> str:
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines)


def level_summary(result: LevelsResult) -> pd.DataFrame:
    t = result.table
    rows = []
    for k in range(1, result.config.n_levels + 1):
        s = t.loc[t["level"] == k, "similarity"]
        rows.append(
            {
                "level": f"L{k}",
                "concepts": len(s),
                "max S": f"{s.max():.4f}",
                "min S": f"{s.min():.4f}",
                "mean S": f"{s.mean():.4f}",
            }
        )
    return pd.DataFrame(rows)


def render_report(result: LevelsResult) -> str:
    """report.md: what was done to the pool, what each level holds, and any warnings."""
    cfg = result.config
    out = ["# ImageNet-CoG levels", ""]
    if result.warnings:
        out += ["## Warnings", ""] + [f"- **{w}**" for w in result.warnings] + [""]
    out += [
        "## Settings",
        "",
        f"- seen set: `{_show(cfg.seen_file)}`",
        f"- pool: `{_show(cfg.pool_file)}`",
        f"- image counts: `{_show(cfg.counts_file or cfg.imagenet_root or 'none')}`",
        f"- information content: {result.ic.name} ({result.ic.description})",
        f"- cut rule: `{cfg.cut}`, {cfg.n_levels} levels x {cfg.level_size} concepts"
        + (
            f", drawn from {cfg.n_levels} equal rank bins with seed {cfg.seed}"
            if cfg.cut == "bins"
            else ""
        ),
        f"- WordNet 3.0 from `{result.wordnet_source}`",
        f"- built in {result.seconds:.1f} s",
        "",
        "## Pool size after each step",
        "",
        _md_table(
            pd.DataFrame(
                [
                    {
                        "step": s.name,
                        "what": s.description,
                        "applied": "yes" if s.applied else "**skipped**",
                        "removed": s.removed,
                        "remaining": s.remaining,
                    }
                    for s in result.steps
                ]
            )
        ),
        "",
        "## Levels",
        "",
        "S(c) = max over seen concepts c' of Lin(c, c'); L1 is the closest to the seen set.",
        "",
        _md_table(level_summary(result)),
        "",
        *_bins_section(result),
        "![Lin similarity per level](similarity.png)",
        "",
        "## Example concepts",
        "",
    ]
    t = result.table
    for k in range(1, cfg.n_levels + 1):
        lv = t[t["level"] == k].reset_index(drop=True)
        picks = sorted({int(np.round(x)) for x in np.linspace(0, len(lv) - 1, 5)})
        ex = [
            f"{lv.at[p, 'name']} ({lv.at[p, 'wnid']}, S={lv.at[p, 'similarity']:.3f}, "
            f"nearest seen: {lv.at[p, 'nearest_seen_name']})"
            for p in picks
        ]
        out.append(f"- **L{k}**: " + "; ".join(ex))
    out.append("")
    if result.comparison is not None:
        out += _comparison_section(result.comparison, cfg.compare_file)
    return "\n".join(out)


def _bins_section(result: LevelsResult) -> list[str]:
    if result.bins is None:
        return []
    return [
        f"Bins cut: {BINS_ROUNDING}; {result.config.level_size} concepts drawn from each "
        f"(numpy default_rng, seed {result.config.seed}). The bins and their similarity ranges:",
        "",
        _md_table(result.bins.round({"max S": 4, "min S": 4})),
        "",
    ]


def _comparison_section(c: LevelsComparison, path: Path | None) -> list[str]:
    return [
        f"## Comparison with `{_show(path)}`",
        "",
        "Per official level: *membership*, its concepts in any of cog's levels; *level "
        "agreement*, in cog's level of the same number; *given membership*, in the same "
        "level when the official concepts are sorted by cog's S and cut into blocks of the "
        "official sizes (the ranking alone); the range of cog ranks (among the eligible "
        "candidates; *unranked*: dropped by a filter or not in the pool) and of S it spans.",
        "",
        _md_table(c.per_level),
        "",
        "cog's levels (rows) against the official ones (columns):",
        "",
        _md_table(c.confusion),
        "",
    ]
