"""The CSV leaderboard (`results/leaderboard.csv`): one row per
(model, dataset, setting, n_shot, metric, protocol).

Several `cog-eval` processes may finish at once, so every update takes an exclusive lock on a
sidecar `.<file>.lock` (fcntl.flock), re-reads the file, replaces the rows whose key it writes,
and renames a temporary copy over the CSV: a reader never sees a half-written file and a writer
never loses another writer's rows.

Schema 2 (the `schema` column) adds what makes two rows comparable: the level set and split
lists a CoG row was evaluated on (`<file name>@<12 hex of its sha256>`, `-` for in1k), the
weights' sha256 and the preprocessing mode. A schema-1 file (no such columns) is upgraded on
read from the run JSONs its rows name; a row whose run JSON is gone gets `unknown`, which
cog-report never ranks with known level sets. A file from a newer schema is refused.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import fcntl
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from cog import CogError, __version__
from cog.io import atomic_write
from cog.protocols import PROTOCOLS
from cog.zoo.schema import GROUPS  # noqa: F401 (re-exported)

COLUMNS: tuple[str, ...] = (
    "model",
    "group",
    "dataset",
    "setting",
    "n_shot",
    "metric",
    "protocol",
    "mean",
    "std",
    "n_seeds",
    "seeds",
    "values",
    "run",
    "cog_version",
    "updated",
    "schema",
    "level_set",
    "split_lists",
    "weights_sha256",
    "preprocess",
)
SCHEMA = 2
V1_COLUMNS: tuple[str, ...] = COLUMNS[: COLUMNS.index("schema")]
IDENTITY_COLUMNS: tuple[str, ...] = COLUMNS[COLUMNS.index("schema") :]
UNKNOWN = "unknown"
NOT_APPLICABLE = "-"
KEY: tuple[str, ...] = ("model", "dataset", "setting", "n_shot", "metric", "protocol")
SETTINGS = ("all", "few-shot")
METRICS = ("top1", "top5", "knn_top1", "alignment", "uniformity")
PROBE_METRICS = ("top1", "top5")
NO_PROTOCOL = "-"
# Random-init rows carry this suffix on the model name: a different key, so they can never
# replace (or be mistaken for) the rows of the trained weights.
RANDOM_INIT_SUFFIX = "+random-init"
# What the report needs of a leaderboard (other columns are filled when absent).
REQUIRED_COLUMNS = ("model", "group", "dataset", "setting", "n_shot", "metric", "protocol")
NUMERIC_COLUMNS = ("mean", "std")
OPTIONAL_COLUMNS = ("n_seeds", "seeds", "values", "run", "cog_version", "updated")
RANDOM_NAME = re.compile(r"random[-_ ]?init", re.IGNORECASE)

_INT_COLUMNS = ("n_shot", "n_seeds", "schema")
_FLOAT_COLUMNS = ("mean", "std")


def leaderboard_model_name(name: str, random_init: bool = False) -> str:
    """The name a model's rows (and run folder) carry: `<name>+random-init` for random init."""
    return f"{name}{RANDOM_INIT_SUFFIX}" if random_init else name


def is_random_init(model: str) -> bool:
    return model.endswith(RANDOM_INIT_SUFFIX)


def dataset_order(dataset: str) -> tuple[int, str]:
    """in1k first, then cog_l1, cog_l2, ... numerically, then anything else."""
    if dataset == "in1k":
        return (-1, "")
    if dataset.startswith("cog_l") and dataset[5:].isdigit():
        return (int(dataset[5:]), "")
    return (10**6, dataset)


@contextlib.contextmanager
def locked(path: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on `.<name>.lock` beside `path` (a sidecar: the CSV itself is
    replaced on every write, so it cannot carry the lock)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = path.with_name(f".{path.name}.lock")
    with open(lock, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield path
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in COLUMNS})


def _dtype(column: str) -> str:
    if column in _INT_COLUMNS:
        return "int64"
    if column in _FLOAT_COLUMNS:
        return "float64"
    return "object"


def read_leaderboard(
    path: str | Path, *, missing_ok: bool = True, parsed: bool = False
) -> pd.DataFrame:
    """The leaderboard CSV, validated: the one reader of cog-eval and cog-report.

    `missing_ok`: a missing file reads as an empty leaderboard (cog-eval is about to write
    the first rows) instead of an error naming the fix (cog-report has nothing to draw).
    `parsed`: the report's view. Only the key columns and mean/std are required (the rest
    are filled), `seeds` and `values` become tuples and a boolean `random_init` column is
    added. Otherwise every schema column must be there, typed, as cog-eval writes it back."""
    path = Path(path)
    if not path.exists():
        if missing_ok:
            return empty()
        raise CogError(
            f"{path}: no such leaderboard; run `cog-eval MODEL` to create it, "
            "or pass --leaderboard FILE"
        )
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, IsADirectoryError) as e:
        raise CogError(
            f"{path}: not a readable leaderboard CSV ({e}); move it aside and re-run cog-eval"
        ) from None
    except pd.errors.EmptyDataError:
        raise CogError(f"{path}: the file is empty; move it aside and re-run cog-eval") from None
    return report_view(df, path) if parsed else _schema_view(df, path)


def _schema_view(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Every schema column, typed; keys unique (what cog-eval reads before writing back)."""
    df = upgrade(df, path)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise CogError(
            f"{path}: missing leaderboard column(s) {', '.join(missing)}; this is not a cog "
            "leaderboard (or an older one): move it aside and re-run cog-eval"
        )
    try:
        for c in _INT_COLUMNS:
            df[c] = df[c].astype("int64")
        for c in _FLOAT_COLUMNS:
            df[c] = df[c].replace("", "nan").astype("float64")
    except ValueError as e:
        raise CogError(
            f"{path}: bad number in the leaderboard ({e}); fix or remove that row"
        ) from None
    dup = df.duplicated(list(KEY), keep=False)
    if dup.any():
        first = df.loc[dup, list(KEY)].iloc[0].to_dict()
        raise CogError(
            f"{path}: {int(dup.sum())} rows share a key, e.g. {first}; keep one of each "
            "(every key must be unique)"
        )
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[list(COLUMNS) + extra]


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


def report_view(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """The report's view of a raw (all-string) leaderboard frame: hand-written and older
    files are drawn as long as they have the key columns and mean/std; numbers are checked
    row by row and `seeds`/`values` parsed into tuples."""
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


def identity(record: Mapping | None) -> str:
    """`<file name>@<first 12 hex of sha256>` of a run JSON's file record (levels, splits)."""
    if not record or not record.get("sha256"):
        return UNKNOWN
    return f"{Path(str(record.get('path', 'file'))).name}@{str(record['sha256'])[:12]}"


def identity_from_run(rec: Mapping) -> dict[str, str]:
    """The schema-2 identity columns of a run JSON."""
    data = rec.get("data") or {}
    level = str(rec.get("dataset", "")) != "in1k"
    train = data.get("train") or {}
    return {
        "level_set": identity(data.get("levels")) if level else NOT_APPLICABLE,
        "split_lists": identity(data.get("splits")) if level else NOT_APPLICABLE,
        "weights_sha256": str(rec.get("weights_sha256") or UNKNOWN),
        "preprocess": str(train.get("mode") or UNKNOWN),
    }


def upgrade(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Bring a schema-1 frame (string columns) to the current schema; refuse newer ones."""
    import json
    import sys

    if "schema" in df.columns:
        bad = [v for v in df["schema"] if not str(v).isdigit() or int(v) > SCHEMA]
        if bad:
            raise CogError(
                f"{path}: leaderboard schema {bad[0]!r}, this cog reads up to {SCHEMA}; "
                "upgrade cog (or move the file aside)"
            )
        return df
    if any(c in df.columns for c in IDENTITY_COLUMNS) or not all(
        c in df.columns for c in V1_COLUMNS
    ):
        return df  # not a schema-1 file: the column check names what is missing
    filled, unknown = [], 0
    for run, dataset in zip(df["run"], df["dataset"], strict=True):
        try:
            rec = json.loads((path.parent / run).read_text())
        except (OSError, ValueError):
            rec = {"dataset": dataset}
        ids = identity_from_run({**rec, "dataset": dataset})
        unknown += UNKNOWN in ids.values()
        filled.append(ids)
    df = df.copy()
    df["schema"] = str(SCHEMA)
    for c in IDENTITY_COLUMNS[1:]:
        df[c] = [f[c] for f in filled]
    print(
        f"note: {path}: upgraded from leaderboard schema 1 to {SCHEMA} ({len(df)} rows, "
        f"identities read from their run JSONs; {unknown} row(s) marked {UNKNOWN!r}: their "
        "run JSON is missing or predates the record; re-run cog-eval for them)",
        file=sys.stderr,
    )
    return df


def _fmt_float(x: float) -> str:
    return repr(round(float(x), 6))


def make_row(
    *,
    model: str,
    group: str,
    dataset: str,
    setting: str,
    n_shot: int,
    metric: str,
    protocol: str,
    values: Sequence[float],
    seeds: Sequence[int | str] | None,
    run: str,
    updated: str | None = None,
    level_set: str = UNKNOWN,
    split_lists: str = UNKNOWN,
    weights_sha256: str = UNKNOWN,
    preprocess: str = UNKNOWN,
) -> dict:
    """A leaderboard row: mean and population std of `values` (one per seed), validated."""
    if setting not in SETTINGS:
        raise CogError(f"leaderboard row: setting {setting!r} is not one of {SETTINGS}")
    if metric not in METRICS:
        raise CogError(f"leaderboard row: metric {metric!r} is not one of {METRICS}")
    want_protocol = PROTOCOLS if metric in PROBE_METRICS else (NO_PROTOCOL,)
    if protocol not in want_protocol:
        raise CogError(
            f"leaderboard row: metric {metric} needs protocol in {want_protocol}, got {protocol!r}"
        )
    if (setting == "all") != (int(n_shot) == 0):
        raise CogError(
            f"leaderboard row: n_shot must be 0 for 'all' and > 0 for few-shot, got {n_shot}"
        )
    vals = [float(v) for v in values]
    if not vals or not all(math.isfinite(v) for v in vals):
        raise CogError(f"leaderboard row {model}/{dataset}/{metric}: values {vals} are not finite")
    if seeds is not None and len(seeds) != len(vals):
        raise CogError(
            f"leaderboard row {model}/{dataset}/{metric}: {len(seeds)} seeds, {len(vals)} values"
        )
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / len(vals))
    return {
        "model": model,
        "group": group,
        "dataset": dataset,
        "setting": setting,
        "n_shot": int(n_shot),
        "metric": metric,
        "protocol": protocol,
        "mean": round(mean, 6),
        "std": round(std, 6),
        "n_seeds": len(vals),
        "seeds": ";".join(str(s) for s in seeds) if seeds is not None else "",
        "values": ";".join(_fmt_float(v) for v in vals),
        "run": run,
        "cog_version": __version__,
        "updated": updated or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "schema": SCHEMA,
        "level_set": NOT_APPLICABLE if dataset == "in1k" else level_set,
        "split_lists": NOT_APPLICABLE if dataset == "in1k" else split_lists,
        "weights_sha256": weights_sha256,
        "preprocess": preprocess,
    }


def _sort(df: pd.DataFrame) -> pd.DataFrame:
    order = {m: i for i, m in enumerate(METRICS)}
    key = pd.DataFrame(
        {
            "model": df["model"],
            "d": df["dataset"].map(dataset_order),
            "s": df["setting"].map(lambda s: SETTINGS.index(s) if s in SETTINGS else 99),
            "n": df["n_shot"],
            "m": df["metric"].map(lambda m: order.get(m, 99)),
            "p": df["protocol"],
        },
        index=df.index,
    )
    idx = key.sort_values(list(key.columns), kind="stable").index
    return df.loc[idx].reset_index(drop=True)


def update_leaderboard(path: str | Path, rows: Iterable[Mapping]) -> pd.DataFrame:
    """Insert `rows`, replacing existing rows with the same key; locked and atomic.

    Returns the leaderboard as written. Nothing is written when a row is invalid.
    """
    path = Path(path)
    new = pd.DataFrame([dict(r) for r in rows])
    if new.empty:
        return read_leaderboard(path)
    missing = [c for c in COLUMNS if c not in new.columns]
    if missing:
        raise CogError(f"leaderboard rows lack column(s) {', '.join(missing)}")
    if new.duplicated(list(KEY)).any():
        raise CogError("leaderboard rows to write share a key; each key must appear once")
    for c in _INT_COLUMNS:
        new[c] = new[c].astype("int64")
    with locked(path):
        old = read_leaderboard(path)
        keys = pd.MultiIndex.from_frame(new[list(KEY)].astype(str))
        keep = ~pd.MultiIndex.from_frame(old[list(KEY)].astype(str)).isin(keys)
        parts = [df for df in (old.loc[keep], new) if not df.empty]
        merged = _sort(pd.concat(parts, ignore_index=True))
        cols = list(COLUMNS) + [c for c in merged.columns if c not in COLUMNS]
        with atomic_write(path, newline="", encoding="utf-8") as f:
            merged[cols].to_csv(f, index=False)
    return merged[cols]


def level_set_key(row: Mapping) -> str:
    """What a CoG row must share with another to be ranked beside it."""
    return f"levels {row['level_set']}, splits {row['split_lists']}"


def one_level_set(lb: pd.DataFrame, wanted: str | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Keep the CoG rows of one level set (and split lists), plus every in1k row.

    `wanted` (a file name or sha256 prefix) picks it; by default the level set most models
    were evaluated on, a known one before `unknown`. Returns the kept rows and one line per
    left-out level set, saying which rows and how to report them."""
    for c in ("level_set", "split_lists"):
        if c not in lb.columns:
            lb = lb.assign(**{c: UNKNOWN})
    levels = lb["dataset"] != "in1k"
    keys = pd.Series("", index=lb.index)
    keys[levels] = [level_set_key(r) for _, r in lb.loc[levels].iterrows()]
    groups = {k: sorted(set(lb.loc[keys == k, "model"])) for k in dict.fromkeys(keys[levels])}
    if wanted is not None:
        hits = [k for k in groups if wanted in k]
        if len(hits) != 1:
            raise CogError(
                f"--level-set {wanted!r} matches {len(hits)} of the leaderboard's level sets "
                f"({'; '.join(groups) or 'none'}); give a file name or sha256 prefix of one"
            )
        chosen = hits[0]
    elif len(groups) <= 1:
        return lb, []
    else:
        chosen = max(
            groups,
            key=lambda k: (UNKNOWN not in k, len(groups[k]), int((keys == k).sum()), k),
        )
    notes = [
        f"{k}: {int((keys == k).sum())} row(s) of {', '.join(models)} are not ranked with "
        f"{chosen} (other levels or splits are other tasks); --level-set "
        f"'{k.split(' ', 2)[1].rstrip(',')}' reports them"
        for k, models in groups.items()
        if k != chosen
    ]
    return lb.loc[~levels | (keys == chosen)].copy(), notes
