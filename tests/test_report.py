"""cog-report on the fixture results: the plotted numbers are the leaderboard's, partial
results are drawn and listed, random-init rows are left out, the page embeds everything."""

from __future__ import annotations

import csv
import json
import re
import shutil
import sys
import types
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import cog.bench.figures as rp_figures
import cog.bench.style as rp_style
import cog.bench.tables as rp_tables
import cog.concepts.plots as rp_plots
from cog import CogError
from cog.bench import report as rp
from cog.cli.report import main

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "results"
LEVELS = ("cog_l1", "cog_l2", "cog_l3", "cog_l4", "cog_l5")
DATASETS = ("in1k", *LEVELS)
LABELS = ("IN-1K", "L1", "L2", "L3", "L4", "L5")


class FakeZoo(types.ModuleType):
    """cog.zoo's get_card contract (name or alias -> card, CogError if unknown) without
    importing torch: names the leaderboard lacks are looked up there."""

    def get_card(self, name):
        cards = {"sup_resnet50": ("Sup", "torchvision_resnet50"), "dino_resnet50": ("s-DINO",)}
        for card, aliases in cards.items():
            if name == card or name in aliases:
                return types.SimpleNamespace(name=card, aliases=aliases)
        raise CogError(f"unknown model {name}")


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("COG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COG_NLTK_DATA", str(tmp_path / "nltk_data"))
    monkeypatch.setitem(sys.modules, "cog.zoo", FakeZoo("cog.zoo"))
    yield
    plt.close("all")


def raw(metric="top1", protocol="fast", setting="all") -> dict[tuple, dict]:
    """The fixture rows read with the csv module, independently of cog.bench.report."""
    out = {}
    with open(FIXTURE / "leaderboard.csv", newline="") as f:
        for r in csv.DictReader(f):
            if (r["metric"], r["protocol"], r["setting"]) == (metric, protocol, setting):
                vals = [float(v) for v in r["values"].split(";")]
                seeds = [int(s) for s in r["seeds"].split(";")]
                out[(r["model"], r["dataset"], int(r["n_shot"]))] = {
                    "mean": float(r["mean"]),
                    "std": float(r["std"]),
                    "group": r["group"],
                    "by_seed": dict(zip(seeds, vals, strict=True)),
                }
    return out


@pytest.fixture(scope="module")
def lb():
    df = rp_tables.read_leaderboard(FIXTURE / "leaderboard.csv")
    assert rp_tables.mark_random_init(df) == []  # every run JSON named by the fixture exists
    return df


@pytest.fixture(scope="module")
def lb_all(lb):
    return rp_tables.select(lb)


@pytest.fixture(scope="module")
def lb_few(lb):
    return rp_tables.select(lb, setting="few-shot")


def series(ax) -> dict[str, np.ndarray]:
    """label -> plotted y values of every errorbar series in an Axes."""
    return {c.get_label(): np.asarray(c.lines[0].get_ydata(), float) for c in ax.containers}


def test_read_leaderboard_parses_values_and_flags_random_init(lb):
    assert set(lb["model"]) == {
        "sup_resnet50",
        "dino_resnet50",
        "deit_small",
        "mixup_resnet50",
        "swsup_resnet50",
        "mochi_local",
        "sup_resnet50+random-init",
    }
    assert set(lb.loc[lb["random_init"], "model"]) == {"sup_resnet50+random-init"}
    row = lb[(lb["model"] == "swsup_resnet50") & (lb["dataset"] == "in1k")].iloc[0]
    assert row["seeds"] == (22, 37, 45) and row["n_seeds"] == 3
    assert np.isclose(np.mean(row["values"]), row["mean"], atol=1e-4)


def test_select_keeps_one_metric_protocol_and_setting(lb, lb_all):
    assert set(lb_all["metric"]) == {"top1"} and set(lb_all["protocol"]) == {"fast"}
    assert not lb_all["random_init"].any()
    ref = rp_tables.select(lb, protocol="reference")
    assert ref[["model", "dataset", "mean"]].values.tolist() == [["sup_resnet50", "cog_l1", 69.08]]
    knn = rp_tables.select(lb, metric="knn_top1")  # no protocol: '-'
    assert knn["mean"].tolist() == [60.1]
    with_random = rp_tables.select(lb, include_random_init=True)
    assert "sup_resnet50+random-init" in set(with_random["model"])


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("metric,", "measure,", 1), "missing column(s) ['metric']"),
        (lambda t: t.replace(",fast,79.4,", ",fast,abc,", 1), ":2: column 'mean'"),
        (lambda t: t.replace("79.59;79.27", "79.59;x", 1), ":2: column 'values'"),
        (lambda t: "", "empty"),
    ],
)
def test_bad_leaderboards_name_the_file_and_the_fix(tmp_path, edit, message):
    bad = tmp_path / "leaderboard.csv"
    bad.write_text(edit((FIXTURE / "leaderboard.csv").read_text()))
    with pytest.raises(CogError) as e:
        rp_tables.read_leaderboard(bad)
    assert str(bad) in str(e.value) and message in str(e.value)
    assert main(["--leaderboard", str(bad), "--out", str(tmp_path / "f"), "--no-page"]) == 2
    assert not (tmp_path / "f").exists()


def test_random_init_found_from_the_run_json_and_missing_runs_listed(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "results")
    lb_path = tmp_path / "results" / "leaderboard.csv"
    text = lb_path.read_text().replace("deit_small,", "deit_small_x,")
    lb_path.write_text(text)
    run = tmp_path / "results" / "runs" / "deit_small" / "cog_l1_all_fast.json"
    rec = json.loads(run.read_text())
    rec["random_init"] = True
    run.write_text(json.dumps(rec))
    (tmp_path / "results" / "runs" / "mixup_resnet50" / "cog_l2_all_fast.json").unlink()
    df = rp_tables.read_leaderboard(lb_path)
    assert not df.loc[df["model"] == "deit_small_x", "random_init"].any()  # name says nothing
    notes = rp_tables.mark_random_init(df)
    flagged = df[df["random_init"]]
    assert set(flagged["model"]) == {"deit_small_x", "sup_resnet50+random-init"}
    assert set(flagged.loc[flagged["model"] == "deit_small_x", "dataset"]) == {"cog_l1"}
    assert len(notes) == 1 and "cog_l2_all_fast.json" in notes[0]
    # --runs points at another folder: the part after runs/ is looked up there
    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "results" / "runs", moved)
    df2 = rp_tables.read_leaderboard(lb_path)
    notes2 = rp_tables.mark_random_init(df2, moved)
    assert set(df2.loc[df2["random_init"], "model"]) == set(flagged["model"])
    assert len(notes2) == 1 and str(moved / "mixup_resnet50" / "cog_l2_all_fast.json") in notes2[0]


def test_relative_figure_plots_the_difference_to_the_baseline(lb_all):
    p = rp_figures.plot_relative(lb_all, "sup_resnet50")
    want = raw()
    base = {d: want[("sup_resnet50", d, 0)] for d in DATASETS}
    axes = [ax for ax in p.figure.axes if ax.get_visible() and ax.containers]
    titles = [ax.get_title() for ax in axes]
    assert titles == [
        "a: architecture (1 model)",
        "s: self-supervised (1 model)",
        "r: regularization (1 model)",
        "d: extra data (1 model)",
        "local: trained locally (1 model)",
    ]
    for ax in axes:
        assert [t.get_text() for t in ax.get_xticklabels()] == list(LABELS)
        ((model, y),) = series(ax).items()
        expect = [
            want[(model, d, 0)]["mean"] - base[d]["mean"] if (model, d, 0) in want else np.nan
            for d in DATASETS
        ]
        np.testing.assert_allclose(y, expect, atol=1e-9)
        assert "sup_resnet50 (baseline)" in [t.get_text() for t in ax.get_legend().get_texts()]
    # missing points are gaps, not zeros: mixup has no L4, mochi_local no IN-1K
    r = series(axes[2])["mixup_resnet50"]
    assert np.isnan(r[4]) and np.isfinite(r[[0, 1, 2, 3, 5]]).all()
    assert np.isnan(series(axes[4])["mochi_local"][0])
    # error bars: std over seeds of the per-seed differences
    row = p.data[(p.data["model"] == "dino_resnet50") & (p.data["dataset"] == "cog_l3")].iloc[0]
    m, b = want[("dino_resnet50", "cog_l3", 0)]["by_seed"], base["cog_l3"]["by_seed"]
    assert row["err"] == pytest.approx(np.std([m[s] - b[s] for s in m]))
    # seeds that differ from the baseline's: the two stds in quadrature
    row = p.data[(p.data["model"] == "swsup_resnet50") & (p.data["dataset"] == "cog_l1")].iloc[0]
    sw = want[("swsup_resnet50", "cog_l1", 0)]
    assert row["err"] == pytest.approx(np.hypot(sw["std"], base["cog_l1"]["std"]))
    assert "sup_resnet50" not in set(p.data["model"])


def test_relative_without_a_baseline_level_lists_it(lb_all):
    cut = lb_all[~((lb_all["model"] == "sup_resnet50") & (lb_all["dataset"] == "cog_l2"))]
    p = rp_figures.plot_relative(cut, "sup_resnet50")
    assert p.notes == [
        "baseline sup_resnet50 has no result for L2: relative values there are not drawn"
    ]
    assert "cog_l2" not in set(p.data["dataset"])


def test_absolute_figure_plots_each_chosen_model(lb_all):
    chosen = ["sup_resnet50", "mixup_resnet50", "mochi_local"]
    p = rp_figures.plot_absolute(lb_all, chosen)
    ax = p.figure.axes[0]
    want = raw()
    got = series(ax)
    assert list(got) == ["sup_resnet50 [sup]", "mixup_resnet50 [r]", "mochi_local [local]"]
    for label, y in got.items():
        model = label.split()[0]
        expect = [
            want[(model, d, 0)]["mean"] if (model, d, 0) in want else np.nan for d in DATASETS
        ]
        np.testing.assert_allclose(y, expect)
    assert [t.get_text() for t in ax.get_xticklabels()] == list(LABELS)
    assert ax.get_ylabel() == "top-1 (%)"


def test_few_shot_figure_log2_axis_per_level(lb_few):
    p = rp_figures.plot_few_shot(lb_few)
    axes = [ax for ax in p.figure.axes if ax.containers]
    assert [ax.get_title() for ax in axes] == ["L1", "L2", "L3", "L4", "L5"]
    want = raw(setting="few-shot")
    for ax, d in zip(axes, LEVELS, strict=True):
        assert ax.get_xscale() == "log"
        assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "4", "16", "64"]
        for model, y in series(ax).items():
            expect = [want.get((model, d, n), {"mean": np.nan})["mean"] for n in (1, 4, 16, 64)]
            np.testing.assert_allclose(y, expect)
    assert set(series(axes[0])) == {"sup_resnet50", "dino_resnet50", "swsup_resnet50"}
    assert set(series(axes[4])) == {"sup_resnet50", "dino_resnet50"}
    assert np.isnan(series(axes[4])["dino_resnet50"][3])  # the N=64 gap
    legend = [t.get_text() for t in p.figure.legends[0].get_texts()]
    assert legend == ["sup_resnet50 [sup]", "dino_resnet50 [s]", "swsup_resnet50 [d]"]


def test_model_styles_are_stable_across_figures_and_orders(lb_all):
    a = rp_figures.plot_absolute(lb_all, ["dino_resnet50", "sup_resnet50"])
    b = rp_figures.plot_absolute(lb_all, ["sup_resnet50", "deit_small", "dino_resnet50"])
    rel = rp_figures.plot_relative(lb_all, "sup_resnet50")

    def style(ax, label):
        (c,) = [c for c in ax.containers if c.get_label() == label]
        return c.lines[0].get_color(), c.lines[0].get_marker()

    s = rp_style.model_style("dino_resnet50", "s")
    assert style(a.figure.axes[0], "dino_resnet50 [s]") == (s.color, s.marker)
    assert style(b.figure.axes[0], "dino_resnet50 [s]") == (s.color, s.marker)
    assert style(rel.figure.axes[1], "dino_resnet50") == (s.color, s.marker)
    assert rp_style.model_style("dino_resnet50", "s") == s  # a pure function
    styles = {
        rp_style.model_style(m, g) for m, g in lb_all.groupby("model")["group"].first().items()
    }
    assert len(styles) == lb_all["model"].nunique()


def test_ranking_table_mean_std_and_average(lb_all):
    r = rp_tables.ranking_table(lb_all, "sup_resnet50")
    want = raw()
    assert r["model"].tolist()[:5] == [
        "swsup_resnet50",
        "deit_small",
        "dino_resnet50",
        "sup_resnet50",
        "mochi_local",
    ]
    assert r["rank"].tolist() == [1, 2, 3, 4, 5, 0]  # mixup lacks L4: unranked, last
    dino = r.set_index("model").loc["dino_resnet50"]
    means = [want[("dino_resnet50", d, 0)]["mean"] for d in LEVELS]
    assert dino["avg"] == pytest.approx(np.mean(means))
    per_seed = [
        np.mean([want[("dino_resnet50", d, 0)]["by_seed"][s] for d in LEVELS])
        for s in (22, 37, 45, 77, 93)
    ]
    assert dino["avg std"] == pytest.approx(np.std(per_seed))
    assert dino["L3"] == want[("dino_resnet50", "cog_l3", 0)]["mean"]
    sup_avg = np.mean([want[("sup_resnet50", d, 0)]["mean"] for d in LEVELS])
    assert dino["vs baseline"] == pytest.approx(np.mean(means) - sup_avg)
    shown = rp_tables.format_ranking(r).set_index("model")
    assert shown.at["dino_resnet50", "L3"] == "63.5 ± 0.1"
    assert shown.at["mixup_resnet50", "L4"] == "—"
    assert shown.at["mixup_resnet50", "avg L1–L5"].endswith("(4/5 levels)")
    assert shown.at["mixup_resnet50", "#"] == "–"
    md = rp_tables.markdown_table(rp_tables.format_ranking(r))
    assert md.splitlines()[0].startswith("| # | model | family | IN-1K | L1 |")
    assert "| 3 | dino_resnet50 | s | 73.9 ± 0.1 |" in md
    html = rp.html_page("t", rp_tables.format_ranking(r))
    assert "<td>dino_resnet50</td>" in html and "63.5 ± 0.1" in html


def test_missing_results_lists_every_gap(lb_all, lb_few):
    notes = rp_tables.missing_results(lb_all, lb_few)
    assert notes == [
        "deit_small: no few-shot results",
        "dino_resnet50: few-shot L5 lacks N = 64",
        "mixup_resnet50: no all-data result for L4",
        "mixup_resnet50: no few-shot results",
        "mochi_local: no all-data result for IN-1K",
        "mochi_local: fewer than 5 seeds for L1 (2), L2 (2), L3 (2), L4 (2), L5 (2)",
        "mochi_local: no few-shot results",
        "swsup_resnet50: fewer than 5 seeds for IN-1K (3), L1 (3), L2 (3), L3 (3), L4 (3), L5 (3)",
        "swsup_resnet50: no few-shot results for L2, L3, L4, L5",
    ]


def test_choose_models_patterns_and_default(lb_all):
    chosen, notes = rp_tables.choose_models(lb_all, ["dino_*", "Sup", "nosuch_resnet", "s-DINO"])
    assert chosen == ["dino_resnet50", "sup_resnet50"]  # patterns and zoo aliases
    assert len(notes) == 1 and notes[0].startswith("--models nosuch_resnet: no results")
    chosen, notes = rp_tables.choose_models(lb_all, baseline="sup_resnet50", limit=3)
    # more models than the limit: baseline plus the best of each family
    assert chosen == [
        "sup_resnet50",
        "deit_small",
        "dino_resnet50",
        "mixup_resnet50",
        "swsup_resnet50",
        "mochi_local",
    ]


def levels_folder(path: Path, with_candidates: bool = True) -> Path:
    path.mkdir()
    rng = np.random.default_rng(0)
    sim = np.sort(rng.uniform(0.2, 0.95, 60))[::-1]
    level = np.r_[np.repeat([1, 2, 3, 4, 5], 10), np.zeros(10, int)]
    cand = pd.DataFrame(
        {"wnid": [f"n{i:08d}" for i in range(60)], "similarity": sim, "level": level}
    )
    if with_candidates:
        cand.to_csv(path / "candidates.csv", index=False)
    cand[cand["level"] > 0].to_csv(path / "levels.csv", index=False)
    return path


def test_level_similarity_from_a_levels_folder(tmp_path):
    folder = levels_folder(tmp_path / "lv")
    cand, src = rp_plots.read_level_similarity(folder)
    assert src == "candidates.csv" and len(cand) == 60
    t = rp_plots.level_similarity_table(cand)
    assert t["concepts"].tolist() == [10] * 5
    assert t.loc["L1", "max"] == pytest.approx(cand["similarity"].max())
    fig = rp_plots.plot_level_similarity(cand)
    hist, box = fig.axes
    labels = [t.get_text() for t in hist.get_legend().get_texts()]
    assert labels[0] == "eligible pool (60)" and labels[1].startswith("L1 (10): ")
    assert [t.get_text() for t in box.get_xticklabels()] == ["L1", "L2", "L3", "L4", "L5"]
    (folder / "candidates.csv").unlink()
    cand, src = rp_plots.read_level_similarity(folder)
    assert src == "levels.csv" and len(cand) == 50
    (folder / "levels.csv").unlink()
    with pytest.raises(CogError, match=r"neither candidates\.csv nor levels\.csv"):
        rp_plots.read_level_similarity(folder)


def test_cli_writes_every_figure_the_tables_and_the_page(tmp_path, capsys):
    out, page = tmp_path / "results" / "figures", tmp_path / "results" / "README.md"
    levels = levels_folder(tmp_path / "lv")
    argv = ["--leaderboard", str(FIXTURE / "leaderboard.csv"), "--out", str(out)]
    assert main([*argv, "--page", str(page), "--levels", str(levels)]) == 0
    names = sorted(p.name for p in out.iterdir())
    stems = ("relative_top1_fast", "levels_top1_fast", "few_shot_top1_fast", "level_similarity")
    figures = [f"{stem}.{ext}" for stem in stems for ext in ("png", "svg")]
    assert names == sorted([*figures, "ranking_top1_fast.html", "ranking_top1_fast.md"])
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    for name in (
        "relative_top1_fast",
        "levels_top1_fast",
        "few_shot_top1_fast",
        "level_similarity",
    ):
        assert f"](figures/{name}.png)" in text and f"](figures/{name}.svg)" in text
    assert "| 3 | dino_resnet50 | s | 73.9 ± 0.1 |" in text
    assert "- mixup_resnet50: no all-data result for L4" in text
    assert "- deit_small: no few-shot results" in text
    assert "## Left out" in text and "sup_resnet50+random-init" in text.split("## Left out")[1]
    assert "sup_resnet50+random-init |" not in text  # not ranked
    assert [p.name for p in tmp_path.rglob(".*tmp*")] == []  # atomic writes left no temp file
    stdout = capsys.readouterr().out
    assert "  - mixup_resnet50: no all-data result for L4" in stdout
    assert "left out: random-init weights" in stdout


def test_saved_figures_are_identical_on_rerun(tmp_path, lb_all):
    a, b = (
        rp_figures.save_figure(
            rp_figures.plot_absolute(lb_all, ["sup_resnet50", "deit_small"]).figure,
            tmp_path / run / "fig",
            ("png", "svg", "pdf"),
        )
        for run in "ab"
    )
    assert [p.name for p in a] == ["fig.png", "fig.svg", "fig.pdf"]
    for x, y in zip(a, b, strict=True):
        assert x.read_bytes() == y.read_bytes()  # no dates or random ids inside


def test_cli_include_random_init_and_other_metric(tmp_path):
    out, page = tmp_path / "f", tmp_path / "README.md"
    argv = [
        "--leaderboard",
        str(FIXTURE / "leaderboard.csv"),
        "--out",
        str(out),
        "--page",
        str(page),
        "--levels",
        str(levels_folder(tmp_path / "lv")),
    ]
    assert main([*argv, "--include-random-init", "--metric", "top5", "--formats", "pdf"]) == 0
    text = page.read_text()
    assert "| sup_resnet50+random-init | sup |" in text and "## Left out" not in text
    assert "Metric top5" in text
    # no few-shot figure: the fixture's few-shot rows are top-1 only
    pdfs = sorted(p.name for p in out.glob("*.pdf"))
    assert pdfs == ["level_similarity.pdf", "levels_top5_fast.pdf", "relative_top5_fast.pdf"]
    assert (out / "relative_top5_fast.pdf").read_bytes()[:4] == b"%PDF"


def test_partial_leaderboards_never_raise(tmp_path, capsys):
    full = pd.read_csv(FIXTURE / "leaderboard.csv", dtype=str, keep_default_na=False)
    # one model, no baseline, no few-shot
    one = full[(full["model"] == "dino_resnet50") & (full["setting"] == "all")]
    one.to_csv(tmp_path / "one.csv", index=False)
    out, page = tmp_path / "f", tmp_path / "README.md"
    lv = levels_folder(tmp_path / "lv")
    common = ["--out", str(out), "--page", str(page), "--levels", str(lv), "--formats", "png"]
    assert main(["--leaderboard", str(tmp_path / "one.csv"), *common]) == 0
    text = page.read_text()
    assert "baseline sup_resnet50 has no top1 (fast) result" in text
    assert not (out / "relative_top1_fast.png").exists()
    assert (out / "levels_top1_fast.png").is_file()
    # a model with reference-protocol rows only is named, not silently absent
    ref = full[(full["model"] == "deit_small") & (full["metric"] == "top1")].assign(
        protocol="reference"
    )
    pd.concat([one, ref]).to_csv(tmp_path / "two.csv", index=False)
    assert main(["--leaderboard", str(tmp_path / "two.csv"), *common]) == 0
    assert "deit_small: no top1 (fast) results, only top1/reference: not drawn" in page.read_text()
    # header only: a page that says so
    full.iloc[:0].to_csv(tmp_path / "empty.csv", index=False)
    assert main(["--leaderboard", str(tmp_path / "empty.csv"), *common]) == 0
    assert "the leaderboard has no rows yet" in page.read_text()
    # no rows for the protocol asked: the hint names the protocols there are
    assert (
        main(["--leaderboard", str(FIXTURE / "leaderboard.csv"), *common, "--protocol", "exact"])
        == 0
    )
    assert "pass --protocol" in capsys.readouterr().out


@pytest.mark.wordnet
def test_concept_path_reaches_the_nearest_seen_concept_through_the_lin_subsumer():
    from cog.concepts.levels import DEFAULT_OUT
    from cog.concepts.wordnet import load_wordnet

    if not (DEFAULT_OUT / "ic.tsv").is_file():
        pytest.skip("cog/resources/levels not built")
    try:
        reader = load_wordnet(download=False)
    except CogError as e:
        pytest.skip(str(e))
    ic_table = pd.read_csv(DEFAULT_OUT / "ic.tsv", sep="\t")
    ic = dict(zip(ic_table["wnid"], ic_table["ic"], strict=True))
    table = pd.read_csv(DEFAULT_OUT / "levels.csv")
    for _, row in table.iloc[[0, 2500, 4999]].iterrows():
        r = rp_plots.concept_path(reader, row["wnid"], row["nearest_seen_wnid"], ic)
        assert r["lin"] == pytest.approx(row["similarity"], abs=1e-5)
        start = reader.synset_from_pos_and_offset("n", int(row["wnid"][1:])).name()
        end = reader.synset_from_pos_and_offset("n", int(row["nearest_seen_wnid"][1:])).name()
        assert r["path"][0] == start and r["path"][-1] == end and r["subsumer"] in r["path"]


def test_rows_of_other_level_sets_are_never_ranked_together(tmp_path, capsys):
    lb = pd.read_csv(FIXTURE / "leaderboard.csv", dtype=str, keep_default_na=False)
    ours, authors = "levels.csv@aaaaaaaaaaaa", "cog_levels_mapping_file.pkl@bbbbbbbbbbbb"
    dino = lb["model"] == "dino_resnet50"
    lb["schema"] = "2"
    lb["level_set"] = np.where(lb["dataset"] == "in1k", "-", np.where(dino, authors, ours))
    lb["split_lists"] = np.where(lb["dataset"] == "in1k", "-", "splits.csv@cccccccccccc")
    lb["weights_sha256"], lb["preprocess"] = "0" * 64, "fast"
    path = tmp_path / "leaderboard.csv"
    lb.to_csv(path, index=False)
    shutil.copytree(FIXTURE / "runs", tmp_path / "runs")
    argv = ["--leaderboard", str(path), "--out", str(tmp_path / "f"), "--no-page"]
    assert main([*argv, "--formats", "png"]) == 0
    out = capsys.readouterr().out
    ranked = out.split("ranking (average over levels):")[1].split("missing")[0]
    # dino keeps its in1k rows (no level set there) but has no rank and no level
    assert re.search(r"  - dino_resnet50 +nan  \(0 levels\)", ranked)
    assert re.search(r" \d deit_small +\d+\.\d\d  \(5 levels\)", ranked)
    assert f"left out: levels {authors}, splits splits.csv@cccccccccccc:" in out
    assert "dino_resnet50 are not ranked with levels levels.csv@aaaaaaaaaaaa" in out
    assert f"--level-set '{authors}' reports them" in out
    # asked for, the other level set is ranked alone
    assert main([*argv, "--formats", "png", "--level-set", "bbbbbbbb"]) == 0
    ranked = capsys.readouterr().out.split("ranking (average over levels):")[1]
    assert re.search(r" 1 dino_resnet50 +\d+\.\d\d  \(5 levels\)", ranked)
    assert re.search(r"  - deit_small +nan  \(0 levels\)", ranked)
    assert main([*argv, "--level-set", "zzz"]) == 2
    assert "--level-set 'zzz' matches 0 of the leaderboard's level sets" in capsys.readouterr().err


def test_schema_1_leaderboard_is_upgraded_not_misread(tmp_path, capsys):
    lb = rp_tables.read_leaderboard(FIXTURE / "leaderboard.csv")
    assert "upgraded from leaderboard schema 1 to 2" in capsys.readouterr().err
    # the fixture's run JSONs predate the level-set record: those rows are 'unknown'
    cog_rows = lb[lb["dataset"] != "in1k"]
    assert set(cog_rows["level_set"]) == {"unknown"} and set(cog_rows["schema"]) == {"2"}
    assert set(lb.loc[lb["dataset"] == "in1k", "level_set"]) == {"-"}
    newer = pd.read_csv(FIXTURE / "leaderboard.csv", dtype=str, keep_default_na=False)
    newer["schema"] = "3"
    newer.to_csv(tmp_path / "lb.csv", index=False)
    with pytest.raises(CogError, match=r"lb\.csv: leaderboard schema '3', this cog reads up to 2"):
        rp_tables.read_leaderboard(tmp_path / "lb.csv")
