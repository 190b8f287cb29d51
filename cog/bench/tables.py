"""The report's tables: choosing models and runs from the leaderboard, relative and
ranking tables, coverage and what is missing. Missing results are listed, never dropped.
"""

from __future__ import annotations

import contextlib
import difflib
import fnmatch
import functools
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cog.bench.leaderboard import (  # noqa: F401 (the report's names, re-exported)
    KEY,
    NUMERIC_COLUMNS,
    OPTIONAL_COLUMNS,
    RANDOM_NAME,
    REQUIRED_COLUMNS,
    _split,
)
from cog.bench.leaderboard import read_leaderboard as _read_leaderboard
from cog.bench.style import DATASETS, LEVEL_RE, dataset_label, dataset_order, family_order

# ---------------------------------------------------------------- reading results

# The report's reading of the one leaderboard reader (bench.leaderboard): a missing file is
# an error naming the fix, `seeds`/`values` are tuples and `random_init` is a column.
read_leaderboard = functools.partial(_read_leaderboard, missing_ok=False, parsed=True)


def _says_random(obj: object, depth: int = 0) -> bool:
    if not isinstance(obj, dict) or depth > 3:
        return False
    sha = obj.get("weights_sha256")
    if obj.get("random_init") is True or (isinstance(sha, str) and sha.startswith("random-init")):
        return True
    return any(_says_random(v, depth + 1) for v in obj.values())


def run_path(run: str, results_dir: Path, runs_dir: Path | None) -> Path:
    """Where a leaderboard row's run JSON lies: `run` is relative to the results folder;
    with `runs_dir` the part after `runs/` is taken from there instead."""
    p = Path(run)
    if p.is_absolute():
        return p
    if runs_dir is not None:
        parts = p.parts[1:] if p.parts and p.parts[0] == "runs" else p.parts
        return Path(runs_dir, *parts)
    return results_dir / p


def mark_random_init(lb: pd.DataFrame, runs_dir: str | Path | None = None) -> list[str]:
    """Set `random_init` for rows whose run JSON says so (`"random_init": true` or
    `"weights_sha256": "random-init..."`, at any of the first levels of nesting; cog-eval
    also names such models `<model>+random-init`, which `read_leaderboard` catches).

    Returns notes: run files that are missing or unreadable (the rows still count)."""
    results_dir = Path(lb.attrs.get("path", "results/leaderboard.csv")).parent
    runs = Path(runs_dir) if runs_dir is not None else None
    missing, broken = [], []
    cache: dict[Path, bool] = {}
    for i, run in lb["run"].items():
        if not run:
            continue
        p = run_path(run, results_dir, runs)
        if p not in cache:
            try:
                cache[p] = _says_random(json.loads(p.read_text()))
            except FileNotFoundError:
                cache[p] = False
                missing.append(str(p))
            except (OSError, ValueError):
                cache[p] = False
                broken.append(str(p))
        if cache[p]:
            lb.at[i, "random_init"] = True
    notes = []
    if missing:
        notes.append(
            f"{len(missing)} run JSON(s) named by the leaderboard are missing "
            f"(e.g. {missing[0]}); their rows are used as they are"
        )
    if broken:
        notes.append(f"{len(broken)} run JSON(s) are not readable JSON (e.g. {broken[0]})")
    return notes


def run_facts(lb: pd.DataFrame, runs_dir: str | Path | None = None) -> pd.DataFrame:
    """Per leaderboard row, what its run JSON says about the data behind the number: classes,
    train and test images, the kNN k, and the levels file (path, sha256). Rows without a
    readable run JSON get empty values."""
    results_dir = Path(lb.attrs.get("path", "results/leaderboard.csv")).parent
    runs = Path(runs_dir) if runs_dir is not None else None
    cache: dict[Path, dict] = {}
    rows = []
    for i, run in lb["run"].items():
        facts: dict[str, object] = {}
        if run:
            p = run_path(run, results_dir, runs)
            if p not in cache:
                try:
                    cache[p] = json.loads(p.read_text())
                except (OSError, ValueError):
                    cache[p] = {}
            rec = cache[p] if isinstance(cache[p], dict) else {}
            data = rec.get("data") if isinstance(rec.get("data"), dict) else {}
            train, test = data.get("train") or {}, data.get("test") or {}
            lv = data.get("levels") or {}
            knn = (rec.get("metrics") or {}).get("knn_top1") or {}
            facts = {
                "n_classes": test.get("n_classes") or train.get("n_classes"),
                "n_train": train.get("n_images"),
                "n_test": test.get("n_images"),
                "knn_k": knn.get("k") if isinstance(knn, dict) else None,
                "levels_path": lv.get("path") if isinstance(lv, dict) else None,
                "levels_sha256": lv.get("sha256") if isinstance(lv, dict) else None,
            }
        rows.append({"row": i, **facts})
    cols = ["n_classes", "n_train", "n_test", "knn_k", "levels_path", "levels_sha256"]
    return pd.DataFrame(rows, columns=["row", *cols]).set_index("row")


def recorded_levels(lb: pd.DataFrame, facts: pd.DataFrame) -> tuple[Path | None, str]:
    """The levels folder the shown level results were evaluated on, from their run JSONs:
    (folder, "") when all agree and the file is unchanged, else (None, why not)."""
    on_levels = lb["dataset"].astype(str).str.match(LEVEL_RE)
    rec = facts.loc[lb.index[on_levels]].dropna(subset=["levels_sha256"])
    if rec.empty:
        return None, "no run of a level records its levels file"
    sets = rec.groupby("levels_sha256")["levels_path"].first()
    if len(sets) > 1:
        shown = ", ".join(f"{p} ({h[:12]})" for h, p in sets.items())
        return None, (
            f"the runs were evaluated on {len(sets)} different level sets ({shown}); one "
            "figure cannot show them: pass --levels DIR to draw one"
        )
    sha, path = sets.index[0], Path(sets.iloc[0])
    if not path.is_file():
        return None, f"{path}, the levels file the runs recorded, is gone; pass --levels DIR"
    from cog.io import sha256_file

    if sha256_file(path) != sha:
        return None, f"{path} changed since the runs were evaluated; pass --levels DIR"
    return path.parent, ""


def data_table(lb: pd.DataFrame, facts: pd.DataFrame) -> pd.DataFrame:
    """Per dataset (all-data runs): classes and images behind each number, and where
    top-5 or kNN top-1 says little (top-5 with 5 classes or fewer; k above the images per
    class)."""
    rows = []
    sel = lb[lb["setting"] == "all"]
    for d in dataset_order(sel["dataset"]):
        f = facts.loc[sel.index[sel["dataset"] == d]].dropna(subset=["n_classes"])
        if f.empty:
            continue

        def span(col: str, f: pd.DataFrame = f) -> str:
            lo, hi = int(f[col].min()), int(f[col].max())
            return f"{lo:,}" if lo == hi else f"{lo:,}–{hi:,}"

        classes = int(f["n_classes"].min())
        per_class = float(f["n_train"].min()) / max(int(f["n_classes"].max()), 1)
        warn = []
        if classes <= 5:
            warn.append(f"top-5 is 100% by construction ({classes} classes)")
        k = f["knn_k"].dropna()
        if len(k) and float(k.max()) > per_class:
            warn.append(
                f"kNN k={int(k.max())} exceeds the ~{per_class:.0f} training images per class"
            )
        rows.append(
            {
                "dataset": dataset_label(d),
                "classes": span("n_classes"),
                "train images": span("n_train"),
                "test images": span("n_test"),
                "chance top-1 (%)": f"{100 / classes:.1f}",
                "note": "; ".join(warn) or "—",
            }
        )
    return pd.DataFrame(rows)


def chance_levels(lb: pd.DataFrame, facts: pd.DataFrame, metric: str) -> dict[str, float]:
    """Chance score per dataset for a percent metric: 100·k/classes (k = 1, or 5 for top-5),
    from the classes the runs record; {} for other metrics."""
    k = {"top1": 1, "knn_top1": 1, "top5": 5}.get(metric)
    if k is None:
        return {}
    n = facts["n_classes"].groupby(lb["dataset"]).min().dropna()
    return {d: min(100.0, 100.0 * k / c) for d, c in n.items() if c > 0}


def select(
    lb: pd.DataFrame,
    *,
    metric: str = "top1",
    protocol: str = "fast",
    setting: str = "all",
    include_random_init: bool = False,
) -> pd.DataFrame:
    """Rows of one metric, protocol (or '-' for metrics without one) and setting."""
    keep = (
        (lb["metric"] == metric) & lb["protocol"].isin((protocol, "-")) & (lb["setting"] == setting)
    )
    if not include_random_init:
        keep &= ~lb["random_init"]
    out = lb[keep].copy()
    if "updated" in out.columns:
        out = out.sort_values("updated", kind="stable")
    return out.drop_duplicates(list(KEY), keep="last").reset_index(drop=True)


def _seed_map(row: pd.Series) -> dict[int, float]:
    s, v = row["seeds"], row["values"]
    return dict(zip(s, v, strict=True)) if len(s) == len(v) and s else {}


def _close(name: str, names: Iterable[str]) -> str:
    near = difflib.get_close_matches(name, list(names), n=3, cutoff=0.5)
    return f" (close: {', '.join(near)})" if near else ""


def resolve_model(name: str, available: Sequence[str]) -> str | None:
    """`name` as it appears in the leaderboard: itself, or the zoo name or an alias of the
    same card (when the zoo is installed)."""
    if name in available:
        return name
    with contextlib.suppress(Exception):
        from cog.zoo import get_card

        card = get_card(name)
        for n in (card.name, *card.aliases):
            if n in available:
                return n
    return None


def choose_models(
    lb: pd.DataFrame,
    models: Sequence[str] | None = None,
    *,
    baseline: str | None = None,
    limit: int = 8,
    what: str = "figures of chosen models",
) -> tuple[list[str], list[str]]:
    """Models for a figure that shows a chosen few, and notes.

    `models` may hold names or shell patterns (`dino_*`). Without them: every model when
    there are at most `limit`, else the baseline and the best model of each family (by the
    average of its level means)."""
    available = sorted(set(lb["model"]))
    notes: list[str] = []
    if models:
        chosen: list[str] = []
        for m in models:
            hits = fnmatch.filter(available, m) if any(c in m for c in "*?[") else []
            if not hits:
                r = resolve_model(m, available)
                hits = [r] if r else []
            if not hits:
                notes.append(f"--models {m}: no results in the leaderboard{_close(m, available)}")
            chosen += [h for h in hits if h not in chosen]
        return chosen, notes
    if len(available) <= limit:
        return available, notes
    lv = lb[lb["dataset"].str.match(LEVEL_RE)]
    avg = lv.groupby("model")["mean"].mean()
    group = lb.groupby("model")["group"].first()
    chosen = [baseline] if baseline in available else []
    for g in family_order(group):
        members = avg[group.reindex(avg.index) == g].drop(labels=chosen, errors="ignore")
        if len(members):
            chosen.append(str(members.idxmax()))
    notes.append(
        f"{what}: {len(available)} models, so the baseline and the best of each family are "
        f"drawn ({', '.join(chosen)}); pick others with --models"
    )
    return chosen, notes


# ---------------------------------------------------------------- tables


def relative_table(lb: pd.DataFrame, baseline: str) -> tuple[pd.DataFrame, list[str]]:
    """Per model and dataset: mean minus the baseline's mean (points) and its seed spread.

    `err` is the std over seeds of the per-seed differences when both share the same
    seeds (paired), else the two stds combined in quadrature."""
    cols = ["model", "group", "dataset", "level", "mean", "std", "baseline", "delta", "err"]
    base = lb[lb["model"] == baseline].set_index("dataset")
    notes = []
    rows = []
    for _, r in lb[lb["model"] != baseline].iterrows():
        if r["dataset"] not in base.index:
            continue
        b = base.loc[r["dataset"]]
        pm, pb = _seed_map(r), _seed_map(b)
        if len(pm) > 1 and pm.keys() == pb.keys():
            err = float(np.std([pm[s] - pb[s] for s in pm]))
        else:
            err = float(np.hypot(r["std"], b["std"]))
        rows.append(
            {
                "model": r["model"],
                "group": r["group"],
                "dataset": r["dataset"],
                "level": dataset_label(r["dataset"]),
                "mean": float(r["mean"]),
                "std": float(r["std"]),
                "baseline": float(b["mean"]),
                "delta": float(r["mean"] - b["mean"]),
                "err": err,
            }
        )
    lacking = [d for d in dataset_order(lb["dataset"]) if d not in base.index]
    if lacking:
        notes.append(
            f"baseline {baseline} has no result for "
            f"{', '.join(dataset_label(d) for d in lacking)}: relative values there are not drawn"
        )
    df = pd.DataFrame(rows, columns=cols)
    return _sort(df), notes


def _sort(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df.reset_index(drop=True)
    order = {d: i for i, d in enumerate(dataset_order(df["dataset"]))}
    fam = {g: i for i, g in enumerate(family_order(df["group"]))}
    key = df.assign(_f=df["group"].map(fam), _d=df["dataset"].map(order))
    by = ["_f", "model", "_d"] + (["n_shot"] if "n_shot" in df.columns else [])
    return key.sort_values(by).drop(columns=["_f", "_d"]).reset_index(drop=True)


def _long(lb: pd.DataFrame, models: Sequence[str] | None) -> pd.DataFrame:
    sub = lb if models is None else lb[lb["model"].isin(models)]
    out = sub[["model", "group", "dataset", "n_shot", "mean", "std", "n_seeds"]].copy()
    out.insert(3, "level", out["dataset"].map(dataset_label))
    return _sort(out)


def missing_results(
    lb_all: pd.DataFrame, lb_few: pd.DataFrame, models: Sequence[str] | None = None
) -> list[str]:
    """One line per gap: a model lacking a level others have, a model without few-shot,
    few-shot N missing at a level, and results from fewer seeds than the others."""
    notes: list[str] = []
    models = sorted(set(lb_all["model"]) | set(lb_few["model"])) if models is None else models
    expected = dataset_order(lb_all["dataset"])
    nobody = [d for d in DATASETS if d not in expected]
    if nobody and len(lb_all):
        notes.append(f"no model has all-data results for {', '.join(map(dataset_label, nobody))}")
    most = int(lb_all["n_seeds"].max()) if len(lb_all) else 0
    few_grid = {
        d: sorted(set(g["n_shot"])) for d, g in lb_few.groupby("dataset")
    }  # N values someone has, per dataset
    for m in models:
        have = lb_all[lb_all["model"] == m]
        gap = [d for d in expected if d not in set(have["dataset"])]
        if gap:
            notes.append(f"{m}: no all-data result for {', '.join(map(dataset_label, gap))}")
        thin = have[have["n_seeds"] < most]
        if len(thin):
            parts = [
                f"{dataset_label(d)} ({n})"
                for d, n in zip(thin["dataset"], thin["n_seeds"], strict=True)
            ]
            notes.append(f"{m}: fewer than {most} seeds for {', '.join(parts)}")
        fs = lb_few[lb_few["model"] == m]
        if len(lb_few) and fs.empty:
            notes.append(f"{m}: no few-shot results")
            continue
        absent = []
        for d, ns in few_grid.items():
            got = set(fs.loc[fs["dataset"] == d, "n_shot"])
            lack = [n for n in ns if n not in got]
            if lack and got:
                notes.append(
                    f"{m}: few-shot {dataset_label(d)} lacks N = {', '.join(map(str, lack))}"
                )
            elif lack:
                absent.append(dataset_label(d))
        if absent and len(fs):
            notes.append(f"{m}: no few-shot results for {', '.join(absent)}")
    return notes


def ranking_table(lb: pd.DataFrame, baseline: str | None = None) -> pd.DataFrame:
    """One row per model: mean and std per dataset, the average over the levels (IN-1K
    excluded) and its std over seeds, sorted by that average; models missing a level
    come after the complete ones, their average taken over the levels they have."""
    datasets = dataset_order(lb["dataset"])
    levels = [d for d in datasets if LEVEL_RE.match(d)]
    rows = []
    for m, g in lb.groupby("model"):
        by = g.set_index("dataset")
        row: dict[str, object] = {"model": m, "group": by["group"].iloc[0]}
        for d in datasets:
            lab = dataset_label(d)
            row[lab] = float(by.at[d, "mean"]) if d in by.index else np.nan
            row[f"{lab} std"] = float(by.at[d, "std"]) if d in by.index else np.nan
        have = [d for d in levels if d in by.index]
        row["levels"] = len(have)
        row["complete"] = len(have) == len(levels)
        row["avg"] = float(np.mean([by.at[d, "mean"] for d in have])) if have else np.nan
        seed_maps = [_seed_map(by.loc[d]) for d in have]
        same = seed_maps and all(len(s) > 1 and s.keys() == seed_maps[0].keys() for s in seed_maps)
        row["avg std"] = (
            float(np.std([np.mean([s[k] for s in seed_maps]) for k in seed_maps[0]]))
            if same
            else np.nan
        )
        rows.append(row)
    cols = ["model", "group"]
    for d in datasets:
        cols += [dataset_label(d), f"{dataset_label(d)} std"]
    cols += ["avg", "avg std", "levels", "complete"]
    df = pd.DataFrame(rows, columns=cols)
    if baseline is not None and baseline in set(df["model"]):
        b = df.set_index("model").loc[baseline]
        df["vs baseline"] = np.where(df["complete"] & b["complete"], df["avg"] - b["avg"], np.nan)
    df = df.sort_values(["complete", "avg", "model"], ascending=[False, False, True])
    df.insert(0, "rank", np.where(df["complete"], np.arange(1, len(df) + 1), 0))
    return df.reset_index(drop=True)


def _pm(mean: float, std: float) -> str:
    if pd.isna(mean):
        return "—"
    return f"{mean:.1f} ± {std:.1f}" if not pd.isna(std) else f"{mean:.1f}"


def format_ranking(df: pd.DataFrame) -> pd.DataFrame:
    """The ranking as text cells: 'mean ± std' per level, '—' where a result is missing."""
    labels = [c for c in df.columns if f"{c} std" in df.columns and c != "avg"]
    out = pd.DataFrame(
        {
            "#": [str(r) if r else "–" for r in df["rank"]],
            "model": df["model"],
            "family": df["group"],
        }
    )
    for lab in labels:
        out[lab] = [_pm(m, s) for m, s in zip(df[lab], df[f"{lab} std"], strict=True)]
    n_levels = sum(1 for c in labels if c.startswith("L"))
    out[f"avg L1–L{n_levels}"] = [
        _pm(m, s) + ("" if c else f" ({k}/{n_levels} levels)")
        for m, s, c, k in zip(df["avg"], df["avg std"], df["complete"], df["levels"], strict=True)
    ]
    if "vs baseline" in df.columns:
        out["Δ avg vs baseline"] = ["—" if pd.isna(v) else f"{v:+.1f}" for v in df["vs baseline"]]
    return out


def coverage_table(lb_all: pd.DataFrame, lb_few: pd.DataFrame) -> pd.DataFrame:
    """What exists per model: seeds per dataset ('—' if none) and few-shot runs."""
    datasets = dataset_order(set(lb_all["dataset"]) | set(DATASETS))
    grid = {(d, n) for d, n in zip(lb_few["dataset"], lb_few["n_shot"], strict=True)}
    models = pd.concat([lb_all[["model", "group"]], lb_few[["model", "group"]]])
    rows = []
    for m, grp in models.drop_duplicates("model").itertuples(index=False):
        a = lb_all[lb_all["model"] == m].set_index("dataset")["n_seeds"]
        row = {"model": m, "family": grp}
        for d in datasets:
            row[dataset_label(d)] = str(int(a[d])) if d in a.index else "—"
        f = lb_few[lb_few["model"] == m]
        row["few-shot runs"] = f"{len(f)}/{len(grid)}" if grid else "—"
        rows.append(row)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    fam = {g: i for i, g in enumerate(family_order(df["family"]))}
    return df.assign(_f=df["family"].map(fam)).sort_values(["_f", "model"]).drop(columns="_f")


LEFT_COLUMNS = ("#", "model", "family", "group", "level")


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table, names left and numbers right; '|' in cells is escaped."""

    def cell(v: object) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---" if c in LEFT_COLUMNS else "--:" for c in df.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in r) + " |" for r in df.itertuples(index=False)]
    return "\n".join([head, rule, *body])
