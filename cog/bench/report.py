"""Figures, tables and the results page of `cog-report`, drawn from the leaderboard.

Every plot function returns a `Plot`: the matplotlib Figure, the table of exactly what it
drew, and notes on what was missing. Tests and notebooks check the numbers, not only that
an image exists. Missing and partial results never raise: they are drawn with what exists
and listed. Colours and markers come from a hash of the model name and family, so a model
looks the same in every figure whatever else is plotted.
"""

from __future__ import annotations

import html
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import cog
from cog import CogError
from cog.bench.figures import plot_absolute, plot_few_shot, plot_relative, save_figure
from cog.bench.leaderboard import one_level_set
from cog.bench.style import METRIC_LABELS
from cog.bench.tables import (
    KEY,
    _close,
    chance_levels,
    choose_models,
    coverage_table,
    data_table,
    format_ranking,
    mark_random_init,
    markdown_table,
    missing_results,
    ranking_table,
    read_leaderboard,
    recorded_levels,
    resolve_model,
    run_facts,
    select,
)
from cog.concepts.plots import level_similarity_table, plot_level_similarity, read_level_similarity
from cog.io import atomic_write

if "ipykernel" not in sys.modules:  # notebooks keep their inline backend; elsewhere no GUI
    matplotlib.use("Agg")


def html_page(title: str, df: pd.DataFrame, caption: str = "") -> str:
    """A standalone HTML page holding one table."""
    table = df.to_html(index=False, escape=True, border=0, classes="cog")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em}table.cog{border-collapse:collapse}"
        "table.cog th,table.cog td{padding:.3em .7em;border-bottom:1px solid #ddd;"
        "text-align:right}table.cog td:nth-child(-n+3),table.cog th:nth-child(-n+3)"
        "{text-align:left}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p>{html.escape(caption)}</p>\n{table}\n</body></html>\n"
    )


# ---------------------------------------------------------------- the report


@dataclass
class ReportResult:
    """What `make_report` wrote and what it found missing."""

    figures: dict[str, list[Path]]
    tables: dict[str, pd.DataFrame]
    notes: list[str]
    excluded: list[str]
    page: Path | None = None
    files: list[Path] = field(default_factory=list)


def make_report(
    leaderboard: str | Path = "results/leaderboard.csv",
    *,
    runs: str | Path | None = None,
    levels: str | Path | None = None,
    out: str | Path = "results/figures",
    page: str | Path | None = "results/README.md",
    baseline: str = "sup_resnet50",
    models: Sequence[str] | None = None,
    protocol: str = "fast",
    metric: str = "top1",
    formats: Sequence[str] = ("png", "svg"),
    include_random_init: bool = False,
    level_set: str | None = None,
) -> ReportResult:
    """Draw every figure and table from the leaderboard into `out` and regenerate `page`.

    Missing pieces are drawn with what exists and listed in `notes`; random-init rows are
    left out (and listed in `excluded`) unless `include_random_init`; CoG rows of level sets
    other than `level_set` (default: the one most models used) are left out and listed."""
    bad = [f for f in formats if f not in ("png", "svg", "pdf")]
    if bad:
        raise CogError(f"unknown figure format(s) {bad}; choose among png, svg, pdf")
    lb = read_leaderboard(leaderboard)
    notes = mark_random_init(lb, runs)
    facts = run_facts(lb, runs)
    out = Path(out)
    random_models = sorted(set(lb.loc[lb["random_init"], "model"]))
    lb, excluded = one_level_set(lb, level_set)  # rows of other level sets are never ranked
    if random_models and not include_random_init:
        excluded.append(
            "random-init weights (left out of figures and the ranking; --include-random-init "
            "draws them): " + ", ".join(random_models)
        )
    lb_all = select(lb, metric=metric, protocol=protocol, include_random_init=include_random_init)
    lb_few = select(
        lb,
        metric=metric,
        protocol=protocol,
        setting="few-shot",
        include_random_init=include_random_init,
    )
    _note_selection(lb, lb_all, lb_few, metric, protocol, notes)
    figures: dict[str, list[Path]] = {}
    tables: dict[str, pd.DataFrame] = {}
    tag = f"{metric}_{protocol}"
    base = resolve_model(baseline, sorted(set(lb_all["model"])))

    if base is None:
        notes.append(
            f"baseline {baseline} has no {metric} ({protocol}) result"
            f"{_close(baseline, set(lb_all['model']))}: the relative figure is not drawn; "
            "pick another with --baseline"
        )
    elif set(lb_all["model"]) == {base}:
        notes.append(f"the relative figure is not drawn: no model besides the baseline {base}")
    elif len(lb_all):
        p = plot_relative(lb_all, base, metric=metric, protocol=protocol)
        notes += p.notes
        if p.data.empty:
            notes.append(f"the relative figure is not drawn: nothing to compare with {base}")
        else:
            figures["relative"] = save_figure(p.figure, out / f"relative_{tag}", formats)
            tables["relative"] = p.data
        plt.close(p.figure)
    chance = chance_levels(lb, facts, metric)

    chosen, n1 = choose_models(lb_all, models, baseline=base, what="per-level figure")
    notes += n1
    if len(lb_all) and chosen:
        p = plot_absolute(lb_all, chosen, metric=metric, protocol=protocol, chance=chance)
        figures["absolute"] = save_figure(p.figure, out / f"levels_{tag}", formats)
        tables["absolute"] = p.data
        plt.close(p.figure)
    few_models, n2 = choose_models(lb_few, models, baseline=base, what="few-shot figure")
    notes += [n for n in n2 if n not in n1]
    if len(lb_few) and few_models:
        p = plot_few_shot(lb_few, few_models, metric=metric, protocol=protocol, chance=chance)
        figures["few_shot"] = save_figure(p.figure, out / f"few_shot_{tag}", formats)
        tables["few_shot"] = p.data
        plt.close(p.figure)

    notes += missing_results(lb_all, lb_few)
    if len(lb_all):
        ranking = ranking_table(lb_all, base)
        tables["ranking"] = ranking
        shown = format_ranking(ranking)
        caption = _ranking_caption(metric, protocol, base)
        paths = [out / f"ranking_{tag}.md", out / f"ranking_{tag}.html"]
        with atomic_write(paths[0]) as f:
            f.write(f"{caption}\n\n{markdown_table(shown)}\n")
        with atomic_write(paths[1]) as f:
            f.write(html_page("ImageNet-CoG ranking", shown, caption))
        figures["ranking"] = paths
    tables["coverage"] = coverage_table(lb_all, lb_few)
    shown_keys = {tuple(r) for r in pd.concat([lb_all, lb_few])[list(KEY)].itertuples(index=False)}
    mask = [tuple(r) in shown_keys for r in lb[list(KEY)].itertuples(index=False)]
    shown_rows = lb.loc[np.asarray(mask, dtype=bool)]
    tables["data"] = data_table(shown_rows, facts)

    level_source = None
    evaluated = shown_rows if len(shown_rows) else lb
    folder, why = (Path(levels), "") if levels is not None else recorded_levels(evaluated, facts)
    if folder is None:
        notes.append(f"Lin-similarity figure not drawn: {why}")
    else:
        if levels is not None and not folder.exists():
            raise CogError(f"{folder}: no such levels folder; pass a cog-build-levels output")
        try:
            cand, level_source = read_level_similarity(folder)
            fig = plot_level_similarity(
                cand,
                pool_label="eligible pool" if level_source == "candidates.csv" else "all levels",
            )
            figures["similarity"] = save_figure(fig, out / "level_similarity", formats)
            tables["similarity"] = level_similarity_table(cand)
            plt.close(fig)
            level_source = str(folder / level_source)
        except CogError as e:
            if levels is not None:
                raise
            notes.append(f"Lin-similarity figure not drawn: {e}")

    result = ReportResult(figures, tables, notes, excluded)
    result.files = [p for ps in figures.values() for p in ps]
    if page is not None:
        page = Path(page)
        text = render_page(result, page, lb, metric, protocol, base or baseline, level_source)
        with atomic_write(page) as f:
            f.write(text)
        result.page = page
        result.files.append(page)
    return result


def _note_selection(lb, lb_all, lb_few, metric, protocol, notes: list[str]) -> None:
    if len(lb) == 0:
        notes.append(f"{lb.attrs.get('path')}: the leaderboard has no rows yet")
        return
    if len(lb_all) + len(lb_few) == 0:
        same = lb[(lb["metric"] == metric) & (lb["protocol"] == protocol)]
        if len(same) and same["random_init"].all():
            notes.append(
                f"all {len(same)} {metric} ({protocol}) rows are of models with random weights, "
                "left out: pass --include-random-init to draw them"
            )
            return
        have = lb[lb["metric"] == metric]["protocol"].unique().tolist()
        hint = f"; rows exist for protocol(s) {have}: pass --protocol" if have else ""
        metrics = sorted(set(lb["metric"]))
        notes.append(f"no {metric} rows for protocol {protocol}{hint} (metrics: {metrics})")
        return
    shown = set(lb_all["model"]) | set(lb_few["model"])
    for m, g in lb[~lb["model"].isin(shown) & ~lb["random_init"]].groupby("model"):
        have = sorted({f"{r.metric}/{r.protocol}" for r in g.itertuples()})
        notes.append(
            f"{m}: no {metric} ({protocol}) results, only {', '.join(have)}: not drawn; "
            "pick them with --metric/--protocol"
        )


def _ranking_caption(metric: str, protocol: str, baseline: str | None) -> str:
    text = (
        f"Linear-probe {METRIC_LABELS.get(metric, metric)}, {protocol} protocol, all training "
        "data: mean ± population std over seeds; the average is over the levels L1–L5 "
        "(IN-1K excluded), its ± from per-seed averages"
    )
    return text + (f"; Δ against {baseline}." if baseline else ".")


def _rel(target: Path, page: Path) -> str:
    """A path as the page links it: relative to the page when near it, else absolute."""
    rel = Path(os.path.relpath(Path(target).resolve(), Path(page).resolve().parent))
    return rel.as_posix() if rel.parts[:2] != ("..", "..") else Path(target).resolve().as_posix()


def render_page(
    result: ReportResult,
    page: Path,
    lb: pd.DataFrame,
    metric: str,
    protocol: str,
    baseline: str,
    level_source: str | None,
) -> str:
    """results/README.md: the figures, the ranking and what is missing, in one page."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    src = lb.attrs.get("path", "leaderboard.csv")
    lines = [
        "# ImageNet-CoG results",
        "",
        f"Generated by `cog-report` (cog {cog.__version__}) on {now} from `{_rel(Path(src), page)}`"
        f" ({lb['model'].nunique()} models, {len(lb)} rows). Metric {metric}, {protocol} protocol,"
        f" baseline {baseline}. Regenerated on every run: edit the leaderboard, not this page.",
        "",
    ]

    def figure(key: str, title: str, text: str) -> None:
        if key not in result.figures:
            return
        files = result.figures[key]
        png = next((p for p in files if p.suffix == ".png"), files[0])
        others = " · ".join(f"[{p.suffix[1:].upper()}]({_rel(p, page)})" for p in files)
        lines.extend(
            [f"## {title}", "", text, "", f"![{title}]({_rel(png, page)})", "", others, ""]
        )

    if "ranking" in result.tables:
        md, htm = result.figures["ranking"]
        lines += [
            "## Ranking",
            "",
            _ranking_caption(
                metric, protocol, baseline if "vs baseline" in result.tables["ranking"] else None
            )
            + f" Also as [HTML]({_rel(htm, page)}) and [Markdown]({_rel(md, page)}).",
            "",
            markdown_table(format_ranking(result.tables["ranking"])),
            "",
        ]
    figure(
        "relative",
        f"Relative to {baseline}",
        f"Per level, each model's {metric} minus {baseline}'s, in points, one panel per "
        "family; error bars: std over seeds of the per-seed differences.",
    )
    figure("absolute", "Accuracy per level", f"{metric} (%) against level for chosen models.")
    figure("few_shot", "Few-shot", f"{metric} (%) against N training images per concept.")
    if "similarity" in result.figures:
        figure(
            "similarity",
            "Lin similarity per level",
            f"S(c) = max Lin similarity to the seen concepts, from `{_rel(level_source, page)}`.",
        )
        lines += [
            markdown_table(result.tables["similarity"].round(4).reset_index(names="level")),
            "",
        ]
    data = result.tables.get("data")
    if data is not None and not data.empty:
        lines += [
            "## Data behind each number",
            "",
            "Classes and images of the all-data runs shown (ranges when runs differ), and "
            "the chance score of top-1; the note says where top-5 or kNN top-1 tells little.",
            "",
            markdown_table(data),
            "",
        ]
    cov = result.tables.get("coverage")
    if cov is not None and not cov.empty:
        lines += [
            "## What exists",
            "",
            "Seeds with an all-data result per dataset (— none) and few-shot runs present.",
            "",
            markdown_table(cov),
            "",
        ]
    lines += ["## Missing and partial results", ""]
    lines += [f"- {n}" for n in result.notes] or ["- none"]
    lines += [""]
    if result.excluded:
        lines += ["## Left out", ""] + [f"- {e}" for e in result.excluded] + [""]
    return "\n".join(lines)
