"""Figures, tables and the results page of `cog-report`, drawn from the leaderboard.

Every plot function returns a `Plot`: the matplotlib Figure, the table of exactly what it
drew, and notes on what was missing. Tests and notebooks check the numbers, not only that
an image exists. Missing and partial results never raise: they are drawn with what exists
and listed. Colours and markers come from a hash of the model name and family, so a model
looks the same in every figure whatever else is plotted.
"""

from __future__ import annotations

import colorsys
import contextlib
import difflib
import fnmatch
import hashlib
import html
import json
import os
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules:  # notebooks keep their inline backend; elsewhere no GUI
    matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import cog
from cog import CogError
from cog.io import atomic_write
from cog.leaderboard import IDENTITY_COLUMNS, UNKNOWN, one_level_set, upgrade

LEVEL_COLORS = ("#1b9e77", "#66a61e", "#e6ab02", "#d95f02", "#7570b3", "#e7298a", "#a6761d")

DATASETS = ("in1k", "cog_l1", "cog_l2", "cog_l3", "cog_l4", "cog_l5")
FAMILIES = {
    "sup": "supervised",
    "a": "architecture",
    "s": "self-supervised",
    "r": "regularization",
    "d": "extra data",
    "local": "trained locally",
}
REQUIRED_COLUMNS = ("model", "group", "dataset", "setting", "n_shot", "metric", "protocol")
NUMERIC_COLUMNS = ("mean", "std")
OPTIONAL_COLUMNS = ("n_seeds", "seeds", "values", "run", "cog_version", "updated")
KEY = ("model", "dataset", "setting", "n_shot", "metric", "protocol")
METRIC_LABELS = {
    "top1": "top-1 (%)",
    "top5": "top-5 (%)",
    "knn_top1": "kNN top-1 (%)",
    "alignment": "alignment",
    "uniformity": "uniformity",
}
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "p", "h", "*")
RANDOM_NAME = re.compile(r"random[-_ ]?init", re.IGNORECASE)
LEVEL_RE = re.compile(r"^cog_l(\d+)$")
STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


# ---------------------------------------------------------------- names and styles


def dataset_label(dataset: str) -> str:
    """'in1k' -> 'IN-1K', 'cog_l3' -> 'L3'; anything else unchanged."""
    if dataset == "in1k":
        return "IN-1K"
    m = LEVEL_RE.match(dataset)
    return f"L{m.group(1)}" if m else dataset


def dataset_order(datasets: Iterable[str]) -> list[str]:
    """IN-1K first, then the levels by number, then anything else by name."""

    def key(d: str) -> tuple[int, int, str]:
        if d == "in1k":
            return (0, 0, d)
        m = LEVEL_RE.match(d)
        return (1, int(m.group(1)), d) if m else (2, 0, d)

    return sorted(set(datasets), key=key)


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


# ---------------------------------------------------------------- reading results


def _split(text: object, cast: type, path: Path, line: int, column: str) -> tuple:
    if text is None or (isinstance(text, float) and np.isnan(text)) or str(text).strip() == "":
        return ()
    try:
        return tuple(cast(v) for v in str(text).split(";") if v.strip() != "")
    except ValueError:
        raise CogError(
            f"{path}:{line}: column {column!r} holds {text!r}; write ';'-separated "
            f"numbers (e.g. 71.2;70.9), or rerun cog-eval for this row"
        ) from None


def read_leaderboard(path: str | Path) -> pd.DataFrame:
    """The leaderboard CSV (docs/design.md), validated, with `seeds` and `values` parsed
    into tuples and a boolean `random_init` column (from the model name, or a
    `random_init` column when the file has one; `mark_random_init` adds the run JSONs)."""
    path = Path(path)
    if not path.is_file():
        raise CogError(
            f"{path}: no such leaderboard; run `cog-eval MODEL` to create it, "
            "or pass --leaderboard FILE"
        )
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise CogError(f"{path}: not a readable CSV ({e}); regenerate it with cog-eval") from None
    except pd.errors.EmptyDataError:
        raise CogError(f"{path}: the file is empty; regenerate it with cog-eval") from None
    missing = [c for c in (*REQUIRED_COLUMNS, *NUMERIC_COLUMNS) if c not in df.columns]
    if missing:
        raise CogError(
            f"{path}: missing column(s) {missing}; a leaderboard has the columns of "
            "docs/design.md (written by cog-eval)"
        )
    df = upgrade(df, path)  # a schema-1 leaderboard gets its identity columns
    for c in OPTIONAL_COLUMNS:
        if c not in df.columns:
            df[c] = ""
    for c in IDENTITY_COLUMNS[1:]:
        if c not in df.columns:
            df[c] = UNKNOWN
    for c in ("n_shot", *NUMERIC_COLUMNS):
        num = pd.to_numeric(df[c].replace("", np.nan), errors="coerce")
        bad = num.isna() & (df[c] != "") if c == "std" else num.isna()  # std may be blank
        if bad.any():
            i = int(np.argmax(bad.to_numpy()))
            raise CogError(
                f"{path}:{i + 2}: column {c!r} of model {df.at[i, 'model']!r} holds "
                f"{df.at[i, c]!r}, not a number; fix the row or rerun cog-eval for it"
            )
        df[c] = num
    df["n_shot"] = df["n_shot"].astype(int)
    df["std"] = df["std"].fillna(0.0)
    df["seeds"] = [_split(v, int, path, i + 2, "seeds") for i, v in enumerate(df["seeds"])]
    df["values"] = [_split(v, float, path, i + 2, "values") for i, v in enumerate(df["values"])]
    n = pd.to_numeric(df["n_seeds"].replace("", np.nan), errors="coerce")
    df["n_seeds"] = n.fillna(df["values"].map(len)).astype(int)
    flag = df["model"].map(lambda m: bool(RANDOM_NAME.search(m)))
    if "random_init" in df.columns:
        flag |= df["random_init"].astype(str).str.lower().isin(("1", "true", "yes"))
    df["random_init"] = flag.astype(bool)
    df.attrs["path"] = str(path)
    return df


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

    `reader` is an nltk WordNet reader (`cog.wordnet.load_wordnet()`), `ic` maps wnids to
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
