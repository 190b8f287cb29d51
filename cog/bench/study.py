"""`cog-tldr study`: how much of each model's CoG accuracy survives compression
to d dimensions, per method and level, as tables and a markdown summary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cog import CogError
from cog.bench.compress import compress_model
from cog.compress.base import _plain
from cog.compress.files import METHODS, load_projection, make_estimator
from cog.compress.matrix import project
from cog.features.options import FeatureSource, updated
from cog.features.settings import feature_kind, features_seal
from cog.io import atomic_write

# --------------------------------------------------------------------------- zoo integration

DEFAULT_STUDY_DIMS = (16, 32, 64, 128, 256)


# --------------------------------------------------------------------------- study

STUDY_METRICS = ("logreg", "knn")


def _score(metric: str, Xtr, ytr, Xte, yte, seed: int, device: str) -> float:
    """Top-1 in [0, 1]: cog's fast linear probe, or the weighted kNN classifier."""
    if metric == "knn":
        from cog.protocols.metrics import knn_accuracy

        return float(knn_accuracy(Xtr, ytr, Xte, yte, device=device))
    from cog.protocols.probe import LogRegProbe

    probe = LogRegProbe(protocol="fast", seed=seed, device=device)
    return float(probe.fit(Xtr, ytr).score(Xte, yte))


def study(
    model: str,
    dims: Sequence[int] = DEFAULT_STUDY_DIMS,
    *,
    methods: Sequence[str] = METHODS,
    datasets: Sequence[str] | None = None,
    fit_on: str = "in1k/train",
    metric: str = "logreg",
    seed: int = 22,
    params: dict[str, dict[str, Any]] | None = None,
    out: str | Path = "results/figures",
    overwrite: bool = False,
    overwrite_features: bool = False,
    echo: Any = print,
    source: FeatureSource | None = None,
    **settings: Any,
) -> Any:
    """Fit every method at every d on `fit_on`, score each dataset's projected features
    (top-1 of the fast linear probe, or kNN), and compare with the uncompressed features.

    Writes tldr_<model>.{json,csv,md,png} in `out`; finished cells are kept in the JSON, so an
    interrupted study resumes. d larger than the feature dimension is reported as skipped.
    Returns the table as a pandas DataFrame.
    """
    import json

    from cog import zoo
    from cog.features.cache import open_features
    from cog.features.ensure import ensure_features

    if metric not in STUDY_METRICS:
        raise CogError(f"metric {metric!r} unknown; choose one of {', '.join(STUDY_METRICS)}")
    for m in methods:
        make_estimator(m, 1)  # validates the name
    if not dims or min(int(d) for d in dims) < 1:
        raise CogError(f"--dims {list(dims)}: give positive dimensions, e.g. 16,32,64,128,256")
    source = updated(source, settings, "study")
    card = zoo.get_card(model)
    if datasets is None:
        from cog.bench.config import level_count

        n_levels = level_count(source.roots.levels)
        datasets = ["in1k", *(f"cog_l{k}" for k in range(1, n_levels + 1))]
    out = Path(out)
    record_path = out / f"tldr_{card.name}.json"
    config = {
        "model": card.name,
        "fit_on": fit_on,
        "metric": metric,
        "seed": seed,
        "params": _plain(params or {}),
    }
    config = json.loads(json.dumps(config))  # as it reads back from the record
    done: dict[str, dict] = {}
    if record_path.is_file() and not overwrite:
        old = json.loads(record_path.read_text())
        if old.get("config") == config:
            done = {r["key"]: r for r in old.get("rows", [])}
    rows: list[dict] = []

    def keep(row: dict) -> None:
        rows.append(row)
        done[row["key"]] = row
        with atomic_write(record_path) as f:
            json.dump({"config": config, "rows": list(done.values())}, f, indent=1)

    caches = {
        (ds, sp): ensure_features(card.name, ds, sp, source, overwrite=overwrite_features)
        for ds in datasets
        for sp in ("train", "test")
    }
    with open_features(caches[(datasets[0], "train")]) as fs:
        full_dim = fs.dim
    fits: dict[tuple[str, int], dict] = {}
    for m in methods:
        for d in dims:
            if int(d) > full_dim:
                echo(f"{m} d={d}: skipped, larger than the feature dimension {full_dim}")
                continue
            fits[(m, int(d))] = compress_model(
                card.name,
                int(d),
                method=m,
                fit_on=fit_on,
                params=(params or {}).get(m),
                overwrite=overwrite,
                overwrite_features=overwrite_features,
                echo=echo,
                source=source,
            )
    for ds in datasets:
        with open_features(caches[(ds, "train")]) as tr, open_features(caches[(ds, "test")]) as te:
            ytr, yte = tr.labels, te.labels
            kind = "|".join(feature_kind(tr.attrs).values())  # fast/exact, dtype, decode
            seals = f"{features_seal(tr.attrs)}|{features_seal(te.attrs)}"  # the bytes
            ident = f"{tr.attrs.get('weights_sha256')}|{tr.attrs.get('images_sha256')}|{kind}"
            ident += f"|{seals}"
            base_key = f"{ds}|full|{full_dim}|{hashlib.sha256(ident.encode()).hexdigest()[:16]}"
            if base_key in done:
                rows.append(done[base_key])
            else:
                echo(f"{ds}: scoring the uncompressed {full_dim}-d features")
                top1 = _score(
                    metric,
                    tr.features,
                    ytr,
                    te.features,
                    yte,
                    seed,
                    source.options.device,
                )
                keep(
                    {
                        "key": base_key,
                        "dataset": ds,
                        "method": "full",
                        "dim": full_dim,
                        "top1": 100 * top1,
                    }
                )
            for (m, d), fit in fits.items():
                key = f"{ds}|{m}|{d}|{fit['sha256'][:16]}|{base_key[-16:]}"
                if key in done:
                    rows.append(done[key])
                    continue
                echo(f"{ds}: scoring {fit['name']}")
                module = load_projection(fit["path"])
                dev = source.options.device
                ztr, zte = project(module, tr, device=dev), project(module, te, device=dev)
                top1 = _score(metric, ztr, ytr, zte, yte, seed, dev)
                keep({"key": key, "dataset": ds, "method": m, "dim": d, "top1": 100 * top1})
    table = _study_table(rows, card.name)
    _write_study(table, out, card.name, metric)
    echo(f"wrote {out / f'tldr_{card.name}'}.{{json,csv,md,png}}")
    return table


def _study_table(rows: list[dict], model: str) -> Any:
    import pandas as pd

    df = pd.DataFrame(rows).drop(columns="key")
    full = df[df.method == "full"].set_index("dataset")["top1"]
    df["full_top1"] = df.dataset.map(full)
    # undefined (NaN) where the uncompressed features score 0
    df["ratio"] = (df.top1 / df.full_top1).where(df.full_top1 > 0)
    df.insert(0, "model", model)
    from cog.bench.leaderboard import dataset_order

    order = {"full": 0, **{m: i + 1 for i, m in enumerate(METHODS)}}
    return df.sort_values(
        ["dataset", "method", "dim"],
        key=lambda s: (
            s.map(dataset_order)
            if s.name == "dataset"
            else s.map(order)
            if s.name == "method"
            else s
        ),
    ).reset_index(drop=True)


def _write_study(df: Any, out: Path, model: str, metric: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stem = out / f"tldr_{model}"
    with atomic_write(stem.with_suffix(".csv")) as f:
        df.to_csv(f, index=False, float_format="%.4f")
    wide = df[df.method != "full"].pivot_table(
        index=["method", "dim"], columns="dataset", values="ratio", sort=False
    )
    top = df.pivot_table(index=["method", "dim"], columns="dataset", values="top1", sort=False)
    what = "linear-probe" if metric == "logreg" else "kNN"
    lines = [
        f"# {model}: TLDR vs PCA-w, {what} top-1 (%) per dataset",
        "",
        _markdown(top, "{:.2f}"),
        "",
        "Ratio to the uncompressed features:",
        "",
        _markdown(wide, "{:.3f}"),
        "",
    ]
    with atomic_write(stem.with_suffix(".md")) as f:
        f.write("\n".join(lines))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    styles = {"tldr": "-o", "pcaw": "--s"}
    for i, ds in enumerate(dict.fromkeys(df.dataset)):
        c = colors[i % len(colors)]
        sub = df[df.dataset == ds]
        for m in styles:
            s = sub[sub.method == m].sort_values("dim")
            if len(s):
                label = f"{ds} {'TLDR' if m == 'tldr' else 'PCA-w'}"
                axes[0].plot(s.dim, s.top1, styles[m], color=c, label=label, ms=4)
                axes[1].plot(s.dim, s.ratio, styles[m], color=c, ms=4)
        full = sub[sub.method == "full"]
        if len(full):
            axes[0].axhline(float(full.top1.iloc[0]), color=c, lw=0.8, ls=":")
    axes[1].axhline(1.0, color="k", lw=0.8, ls=":")
    for ax, ylabel in zip(axes, (f"{what} top-1 (%)", "ratio to uncompressed"), strict=True):
        ax.set_xscale("log", base=2)
        ticks = sorted({int(d) for d in df[df.method != "full"].dim})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.set_xlabel("dimensions d")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle(f"{model}: TLDR (solid) vs PCA-w (dashed); dotted = uncompressed")
    fig.tight_layout()
    with atomic_write(stem.with_suffix(".png"), "wb") as f:
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def _markdown(table: Any, fmt: str) -> str:
    cols = [str(c) for c in table.columns]
    head = "| method | d | " + " | ".join(cols) + " |"
    sep = "|---|---:|" + "---:|" * len(cols)
    body = [
        f"| {m} | {d} | " + " | ".join("-" if np.isnan(v) else fmt.format(v) for v in row) + " |"
        for (m, d), row in zip(table.index, table.to_numpy(), strict=True)
    ]
    return "\n".join([head, sep, *body])
