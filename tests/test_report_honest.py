"""cog-report never misleads: figures from the levels the runs were evaluated on (never mixed),
plain notes for rows left out, no empty figures, error bars inside 0-100, chance lines, and
the classes and images behind each number, with a note where top-5 or kNN is trivial."""

from __future__ import annotations

import hashlib
import json
import sys
import types
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

import cog.bench.figures as rp_figures
import cog.bench.tables as rp_tables
from cog import CogError
from cog.cli.report import main

LEVELS = ("cog_l1", "cog_l2", "cog_l3", "cog_l4", "cog_l5")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    class FakeZoo(types.ModuleType):
        def get_card(self, name):
            raise CogError(f"unknown model {name}")

    monkeypatch.setenv("COG_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(sys.modules, "cog.zoo", FakeZoo("cog.zoo"))
    yield
    plt.close("all")


def levels_dir(path: Path, seed: int) -> Path:
    """A cog-build-levels-like folder: candidates.csv and the mapping pickle runs record."""
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    sim = np.sort(rng.uniform(0.1, 0.9, 15))[::-1]
    pd.DataFrame(
        {
            "wnid": [f"n{i:08d}" for i in range(15)],
            "similarity": sim,
            "level": np.repeat(range(1, 6), 3),
        }
    ).to_csv(path / "candidates.csv", index=False)
    (path / "cog_levels_mapping_file.pkl").write_bytes(f"levels {seed}".encode())
    return path


def write_results(
    root: Path,
    models: dict[str, tuple[str, Path | None]],
    *,
    classes: int = 3,
    per_class: int = 8,
    mean: float = 60.0,
    std: float = 30.0,
) -> Path:
    """A leaderboard and run JSONs: per model (group, levels folder it was evaluated on)."""
    rows = []
    for model, (group, lv) in models.items():
        for d in ("in1k", *LEVELS):
            run = f"runs/{model}/{d}_all_fast.json"
            data = {
                "train": {"n_images": classes * per_class, "n_classes": classes},
                "test": {"n_images": classes * 4, "n_classes": classes},
            }
            if lv is not None and d != "in1k":
                pkl = lv / "cog_levels_mapping_file.pkl"
                data["levels"] = {
                    "path": str(pkl),
                    "sha256": hashlib.sha256(pkl.read_bytes()).hexdigest(),
                }
            rec = {"model": model, "data": data, "metrics": {"knn_top1": {"k": 20}}}
            (root / run).parent.mkdir(parents=True, exist_ok=True)
            (root / run).write_text(json.dumps(rec))
            for metric in ("top1", "top5"):
                rows.append(
                    {
                        "model": model,
                        "group": group,
                        "dataset": d,
                        "setting": "all",
                        "n_shot": 0,
                        "metric": metric,
                        "protocol": "fast",
                        "mean": mean,
                        "std": std,
                        "n_seeds": 2,
                        "seeds": "22;37",
                        "values": f"{mean - std};{mean + std}",
                        "run": run,
                    }
                )
    path = root / "leaderboard.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def run(lb: Path, tmp_path: Path, *extra: str) -> str:
    page = tmp_path / "page.md"
    args = ["--leaderboard", str(lb), "--out", str(tmp_path / "fig"), "--page", str(page)]
    assert main([*args, "--formats", "png", *extra]) == 0
    return page.read_text()


def test_similarity_figure_comes_from_the_levels_the_runs_recorded(tmp_path):
    lv = levels_dir(tmp_path / "mine", seed=1)
    lb = write_results(tmp_path / "res", {"m_a": ("a", lv), "m_b": ("s", lv)})
    text = run(lb, tmp_path, "--baseline", "m_a")
    assert (tmp_path / "fig" / "level_similarity.png").is_file()
    assert "mine/candidates.csv" in text


def test_runs_on_different_level_sets_are_not_mixed(tmp_path):
    one, two = levels_dir(tmp_path / "one", 1), levels_dir(tmp_path / "two", 2)
    lb = write_results(tmp_path / "res", {"m_a": ("a", one), "m_b": ("s", two)})
    text = run(lb, tmp_path, "--baseline", "m_a")
    assert not (tmp_path / "fig" / "level_similarity.png").exists()
    assert "2 different level sets" in text and "--levels" in text
    # a recorded levels file that changed since is not trusted either
    lb = write_results(tmp_path / "res2", {"m_a": ("a", one)})
    (one / "cog_levels_mapping_file.pkl").write_bytes(b"edited")
    assert "changed since the runs were evaluated" in run(lb, tmp_path, "--baseline", "m_a")


def test_random_only_and_baseline_only_are_explained_not_drawn(tmp_path):
    lv = levels_dir(tmp_path / "lv", 1)
    lb = write_results(tmp_path / "res", {"m+random-init": ("a", lv)})
    text = run(lb, tmp_path)
    assert "rows are of models with random weights" in text and "--include-random-init" in text
    assert "pass --protocol" not in text
    text = run(lb, tmp_path, "--include-random-init", "--baseline", "m+random-init")
    assert not (tmp_path / "fig" / "relative_top1_fast.png").exists()
    assert "no model besides the baseline" in text


def _bar_extent(fig: plt.Figure) -> tuple[float, float]:
    lo, hi = np.inf, -np.inf
    for ax in fig.axes:
        for coll in ax.collections:
            for seg in coll.get_segments():  # error bars are the vertical segments
                if len(seg) and np.allclose(seg[:, 0], seg[0, 0]):
                    lo, hi = min(lo, seg[:, 1].min()), max(hi, seg[:, 1].max())
    return lo, hi


def test_error_bars_stay_in_range_and_chance_is_drawn(tmp_path):
    lv = levels_dir(tmp_path / "lv", 1)
    lb_path = write_results(tmp_path / "res", {"m": ("a", lv)}, mean=90.0, std=25.0)
    lb = rp_tables.read_leaderboard(lb_path)
    facts = rp_tables.run_facts(lb)
    chance = rp_tables.chance_levels(lb, facts, "top1")
    assert chance == pytest.approx({d: 100 / 3 for d in ("in1k", *LEVELS)})
    p = rp_figures.plot_absolute(rp_tables.select(lb), ["m"], chance=chance)
    lo, hi = _bar_extent(p.figure)
    assert hi <= 100.0 and lo >= 65.0 - 1e-9  # 90 - 25 below, clipped at 100 above
    labels = p.figure.axes[0].get_legend_handles_labels()[1]
    assert any("chance" in label for label in labels)


def data_row(page: str, dataset: str) -> str:
    section = page.split("## Data behind each number", 1)[1].split("\n## ", 1)[0]
    return next(line for line in section.splitlines() if line.startswith(f"| {dataset} |"))


def test_page_states_classes_images_and_trivial_metrics(tmp_path):
    lv = levels_dir(tmp_path / "lv", 1)
    lb = write_results(tmp_path / "res", {"m": ("a", lv)}, classes=3, per_class=8)
    text = run(lb, tmp_path, "--baseline", "m")
    row = data_row(text, "L3")
    assert "| 3 | 24 | 12 | 33.3 |" in row
    assert "top-5 is 100% by construction (3 classes)" in row
    assert "kNN k=20 exceeds the ~8 training images per class" in row
    lb = write_results(tmp_path / "big", {"m": ("a", lv)}, classes=1000, per_class=100)
    row = data_row(run(lb, tmp_path), "L3")
    assert row.rstrip().endswith("| — |")
