"""`cog-eval` orchestration: features in, run JSONs and leaderboard rows out.

For one model it makes sure every (dataset, split) feature cache exists (extracting what is
missing), refuses inputs the probe would silently get wrong (class sets that differ, non-finite
features, classes too small for a few-shot N, random weights not asked for), runs the linear
probe per seed (all data and few-shot), kNN and alignment/uniformity, writes one JSON per run
under `<out>/runs/<model>/` and replaces the model's rows in `<out>/leaderboard.csv`.

Runs resume: a finished run JSON whose inputs (weights, feature mode and type, image lists,
level and split files, seeds, protocol) match is reused unless `force`; seeds finished before
an interruption are kept in a hidden `.<run>.partial.json` beside it. The leaderboard is
written once, at the end, so a failed evaluation leaves it untouched.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from cog import CogError
from cog.bench.config import (
    KNN_K,
    KNN_TEMPERATURE,
    PAIR_SEED,
    SCHEMA_VERSION,
    SPLITS,
    EvalConfig,
    Split,
    _file_record,
    _now,
    _partial_path,
    _stats,
    check_finite,
    check_pair,
    check_roots,
    check_shots,
    check_weights,
    levels_file,
    open_split,
    resolve_datasets,
    run_path,
    splits_file,
    versions,
)
from cog.bench.leaderboard import (
    NO_PROTOCOL,
    dataset_order,
    identity_from_run,
    leaderboard_model_name,
    make_row,
    read_leaderboard,
    update_leaderboard,
)
from cog.features.settings import features_seal
from cog.io import atomic_write

# ---------------------------------------------------------------- runs


def _fingerprint(
    model: str,
    card_name: str,
    ds: str,
    setting: str,
    n_shot: int,
    protocol: str,
    train: Split,
    test: Split,
    data: dict,
) -> dict:
    """What a stored run must match to be reused on resume."""
    fp = {
        "model": model,
        "zoo_name": card_name,
        "dataset": ds,
        "setting": setting,
        "n_shot": n_shot,
        "protocol": protocol,
        "weights_sha256": train.attrs.get("weights_sha256"),
        "features_mode": train.attrs.get("mode"),
        "features_dtype": train.attrs.get("dtype"),
        "train_images_sha256": train.attrs.get("images_sha256"),
        "test_images_sha256": test.attrs.get("images_sha256"),
        "levels_sha256": (data.get("levels") or {}).get("sha256"),
        "splits_sha256": (data.get("splits") or {}).get("sha256"),
    }
    # features of the device decode path never stand in for the CPU path's (nor the reverse);
    # only named when not cpu, so runs stored before the setting existed still match
    decode = str(train.attrs.get("decode", "cpu"))
    if decode != "cpu":
        fp["features_decode"] = decode
    # the features' own sha256 (the caches' seals): features extracted again otherwise (in
    # another precision, say) never keep the runs of the old ones
    seals = [features_seal(sp.attrs) for sp in (train, test)]
    if all(seals):
        fp["features_sha256"] = hashlib.sha256("|".join(seals).encode()).hexdigest()
    return fp


def _same_inputs(stored: object, fingerprint: dict) -> bool:
    """Whether a stored run's inputs are `fingerprint`; runs stored before cog recorded the
    features' sha256 match on the rest."""
    if stored == fingerprint or not isinstance(stored, dict) or "features_sha256" in stored:
        return stored == fingerprint
    return stored == {k: v for k, v in fingerprint.items() if k != "features_sha256"}


def _load_previous(path: Path, fingerprint: dict, force: bool) -> dict | None:
    """The stored run (final JSON, with seeds from an interrupted later attempt merged in)
    whose inputs match `fingerprint`; None with `force` or when nothing matches."""
    if force:
        return None
    found = []
    for p in (path, _partial_path(path)):
        try:
            rec = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if rec.get("schema") == SCHEMA_VERSION and _same_inputs(rec.get("inputs"), fingerprint):
            found.append(rec)
    if not found:
        return None
    rec = found[0]
    for extra in found[1:]:
        rec = {**rec, "complete": False}
        rec["probe"] = {"per_seed": rec["probe"]["per_seed"] | extra["probe"]["per_seed"]}
    return rec


def _write_json(path: Path, rec: dict) -> None:
    with atomic_write(path, encoding="utf-8") as f:
        json.dump(rec, f, indent=2, sort_keys=False)
        f.write("\n")


class Evaluator:
    """Runs one model over its datasets; see `evaluate` for the one-call form."""

    def __init__(self, cfg: EvalConfig):
        cfg.validate()
        self.cfg = cfg
        from cog.zoo import get_card

        self.card = get_card(cfg.model)
        self.name = leaderboard_model_name(self.card.name, cfg.random_init)
        self.datasets = resolve_datasets(cfg)
        self.out = Path(cfg.out)
        self.timings: dict[str, float] = {}
        self.records: list[dict] = []
        self.reused: list[Path] = []
        self.written: list[Path] = []

    # ---- inputs

    def _data_files(self, ds: str) -> dict:
        """Where a dataset's images and lists came from, with the lists' sha256."""
        r = self.cfg.roots
        if ds == "in1k":
            return {"in1k_root": str(r.in1k_root) if r.in1k_root else None}
        return {
            "imagenet_root": str(r.imagenet_root) if r.imagenet_root else None,
            "levels": _file_record(levels_file(r.levels)),
            "splits": _file_record(splits_file(r.splits)),
        }

    def prepare(self) -> dict[str, tuple[Split, Split]]:
        """Extract missing caches, open and validate all of them (before any probe runs)."""
        check_roots(self.cfg, self.datasets)
        opened: list[Split] = []
        try:
            for ds in self.datasets:
                for split in SPLITS:
                    opened.append(self._features(ds, split))
                train, test = opened[-2:]
                check_pair(train, test)
                if self.cfg.few_shot:
                    check_shots(train, self.cfg.shots)
                check_finite(train)
                check_finite(test)
        except BaseException:
            for sp in opened:
                sp.features.close()
            raise
        return {sp.dataset: (sp, opened[k + 1]) for k, sp in enumerate(opened) if k % 2 == 0}

    def _features(self, ds: str, split: str) -> Split:
        """One cache, extracted if missing, opened, and checked for the right weights."""
        cfg = self.cfg
        t0 = time.perf_counter()
        try:
            path = self._ensure(ds, split)
        except CogError as e:
            if "--overwrite" not in str(e):
                raise
            raise CogError(f"{e} (with cog-eval: --overwrite-features)") from None
        self.timings[f"features_{ds}_{split}"] = time.perf_counter() - t0
        sp = open_split(Path(path), ds, split)
        try:
            check_weights(sp, self.card.name, cfg.random_init)
        except CogError:
            sp.features.close()
            raise
        if sp.failed:
            print(
                f"warning: {sp.path}: {len(sp.failed)} image(s) could not be decoded and are not "
                "in the features (listed in its failed_paths)",
                file=sys.stderr,
            )
        return sp

    def _ensure(self, ds: str, split: str) -> Path:
        from cog.features.ensure import ensure_features

        cfg = self.cfg
        return ensure_features(
            self.card.name, ds, split, cfg.source(), overwrite=cfg.overwrite_features
        )

    # ---- runs

    def _tasks(self) -> list[tuple[str, str, int]]:
        tasks = []
        for ds in self.datasets:
            tasks.append((ds, "all", 0))
            if self.cfg.few_shot:
                tasks.extend((ds, "few-shot", n) for n in sorted(self.cfg.shots))
        return tasks

    def run(self) -> list[dict]:
        """Prepare, run every (dataset, setting) and update the leaderboard; the run records."""
        t0 = time.perf_counter()
        read_leaderboard(self.out / "leaderboard.csv")  # a broken file fails now, not at the end
        pairs = self.prepare()
        try:
            self._run_all(pairs)
        finally:
            for train, test in pairs.values():
                train.features.close()
                test.features.close()
        self.timings["total"] = time.perf_counter() - t0
        rows = [row for rec in self.records for row in leaderboard_rows(rec, self.out)]
        update_leaderboard(self.out / "leaderboard.csv", rows)
        return self.records

    def _run_all(self, pairs: dict[str, tuple[Split, Split]]) -> None:
        tasks = self._tasks()
        n_units = sum(len(self.cfg.seeds) + (s == "all") for _, s, _ in tasks)
        with tqdm(
            total=n_units, desc=f"cog-eval {self.name}", unit="fit", disable=not self.cfg.progress
        ) as bar:
            for ds, setting, n in tasks:
                train, test = pairs[ds]
                self.records.append(self._run_one(ds, setting, n, train, test, bar))

    def _run_one(self, ds, setting, n, train, test, bar) -> dict:
        data = self._data_files(ds)
        cfg = self.cfg
        path = run_path(self.out, self.name, ds, setting, n, cfg.protocol)
        fp = _fingerprint(
            self.name, self.card.name, ds, setting, n, cfg.protocol, train, test, data
        )
        prev = _load_previous(path, fp, cfg.force)
        done = dict(prev["probe"]["per_seed"]) if prev else {}
        metrics = dict(prev.get("metrics", {})) if prev else {}
        want_metrics = setting == "all"
        want_knn = want_metrics and cfg.knn
        seeds = [s for s in cfg.seeds if str(s) not in done]
        have_all = (
            prev is not None
            and prev.get("complete")
            and not seeds
            and [int(s) for s in prev["seeds"]] == list(cfg.seeds)
            and (not want_metrics or {"alignment", "uniformity"} <= set(metrics))
            and (not want_knn or "knn_top1" in metrics)
        )
        if have_all:
            bar.update(len(cfg.seeds) + want_metrics)
            self.reused.append(path)
            if prev.get("inputs") != fp:  # stored before the features' sha256 was: pin it now
                prev = {**prev, "inputs": fp}
                with contextlib.suppress(OSError):  # best effort: read-only results still work
                    _write_json(path, prev)
            return prev

        rec = {
            "schema": SCHEMA_VERSION,
            "complete": False,
            "model": self.name,
            "zoo_name": self.card.name,
            "group": self.card.group,
            "random_init": cfg.random_init,
            "weights_sha256": train.attrs.get("weights_sha256"),
            "checkpoint_load": train.attrs.get("checkpoint_load"),  # weights_only unless trusted
            "dataset": ds,
            "setting": setting,
            "n_shot": n,
            "protocol": cfg.protocol,
            "seeds": list(cfg.seeds),
            "inputs": fp,
            "card": self.card.to_dict(),
            "config": cfg.to_dict(),
            "data": {"train": train.record(), "test": test.record(), **data},
            "probe": {"per_seed": {}},
            "metrics": {},
            "timings": {},
            "versions": versions(),
            "started": prev.get("started", _now()) if prev else _now(),
        }
        partial = _partial_path(path)
        bar.update(len(cfg.seeds) - len(seeds))
        for seed in cfg.seeds:
            if str(seed) in done:
                rec["probe"]["per_seed"][str(seed)] = done[str(seed)]
                continue
            bar.set_postfix_str(f"{ds} {setting}{f' N={n}' if n else ''} seed {seed}")
            rec["probe"]["per_seed"][str(seed)] = probe_seed(
                train, test, seed=seed, n_shot=n, protocol=cfg.protocol, device=cfg.device
            )
            _write_json(partial, rec)
            bar.update(1)
        per_seed = [rec["probe"]["per_seed"][str(s)] for s in cfg.seeds]
        for m in ("top1", "top5"):
            rec["probe"][m] = _stats([r[m] for r in per_seed])
        if want_metrics:
            bar.set_postfix_str(f"{ds} kNN / alignment / uniformity")
            rec["metrics"] = metrics | feature_metrics(
                train,
                test,
                knn=want_knn and "knn_top1" not in metrics,
                skip=set(metrics),
                device=cfg.device,
            )
            bar.update(1)
        rec["timings"] = {
            "probe_seconds": sum(r["seconds"] for r in per_seed),
            "metrics_seconds": sum(v.get("seconds", 0.0) for v in rec["metrics"].values()),
            "features_seconds": {s: self.timings.get(f"features_{ds}_{s}") for s in SPLITS},
        }
        rec["complete"] = True
        rec["finished"] = _now()
        _write_json(path, rec)
        partial.unlink(missing_ok=True)
        self.written.append(path)
        return rec


def probe_seed(
    train: Split, test: Split, *, seed: int, n_shot: int, protocol: str, device: str
) -> dict:
    """One probe fit and test for one seed: top-1/top-5 (percent), best params, time.

    The features go to the probe as the lazy HDF5 datasets: it streams them in chunks, so
    ImageNet-1K train never sits in memory twice."""
    from cog.protocols.probe import LogRegProbe

    t0 = time.perf_counter()
    probe = LogRegProbe(protocol=protocol, seed=seed, device=device, n_shot=n_shot or None)
    probe.fit(train.features.features, train.labels, class_names=train.classes)
    s = probe.scores(test.features.features, test.labels, class_names=test.classes)
    return {
        "top1": 100.0 * float(s["top1"]),
        "top5": 100.0 * float(s["top5"]),
        "best_params": _jsonable(getattr(probe, "best_params_", None)),
        "n_train": int(getattr(probe, "n_train_", len(train.labels))),
        "seconds": time.perf_counter() - t0,
        "timings": _jsonable(getattr(probe, "timings_", None)),
        "peak_memory_bytes": _jsonable(getattr(probe, "peak_memory_", None)),
        "device": getattr(probe, "device_", None),
        "search": _jsonable(getattr(probe, "cv_results_", None)),
    }


def feature_metrics(
    train: Split, test: Split, *, knn: bool, skip: set, device: str = "auto"
) -> dict:
    """kNN top-1 (percent; train as memory, test as queries) and alignment/uniformity of the
    test features (same-class pairs; fixed pair sample): one seed-independent value each."""
    from cog.protocols import metrics

    out: dict = {}
    if knn:
        t0 = time.perf_counter()
        s = metrics.knn_scores(
            train.features.features,
            train.labels,
            test.features.features,
            test.labels,
            k=KNN_K,
            temperature=KNN_TEMPERATURE,
            device=device,
        )
        out["knn_top1"] = {
            "value": 100.0 * float(s["top1"]),
            "top5": 100.0 * float(s["top5"]),
            "k": int(s["k"]),
            "temperature": KNN_TEMPERATURE,
            "seconds": time.perf_counter() - t0,
        }
    X = test.features.features
    pairs = {"n_pairs": metrics.DEFAULT_PAIRS, "seed": PAIR_SEED}
    for name in ("alignment", "uniformity"):
        if name in skip:
            continue
        t0 = time.perf_counter()
        if name == "alignment":
            value = metrics.alignment(X, test.labels, **pairs)
        else:
            value = metrics.uniformity(X, **pairs)
        out[name] = {
            "value": float(value),
            "on": "test",
            **pairs,
            "seconds": time.perf_counter() - t0,
        }
    return out


def _jsonable(obj):
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    return str(obj)


# ---------------------------------------------------------------- leaderboard and summary


def leaderboard_rows(rec: dict, out: Path) -> list[dict]:
    """The leaderboard rows of one run record (probe metrics, then feature metrics)."""
    run = str(
        run_path(
            Path("."), rec["model"], rec["dataset"], rec["setting"], rec["n_shot"], rec["protocol"]
        )
    )
    common = dict(
        model=rec["model"],
        group=rec["group"],
        dataset=rec["dataset"],
        setting=rec["setting"],
        n_shot=rec["n_shot"],
        run=run,
        updated=rec.get("finished"),
        **identity_from_run(rec),
    )
    seeds = [int(s) for s in rec["seeds"]]
    rows = [
        make_row(
            **common,
            metric=m,
            protocol=rec["protocol"],
            values=rec["probe"][m]["values"],
            seeds=seeds,
        )
        for m in ("top1", "top5")
    ]
    for m in ("knn_top1", "alignment", "uniformity"):
        if m in rec.get("metrics", {}):
            rows.append(
                make_row(
                    **common,
                    metric=m,
                    protocol=NO_PROTOCOL,
                    values=[rec["metrics"][m]["value"]],
                    seeds=None,
                )
            )
    return rows


def summary_table(records: Sequence[dict]) -> str:
    """Rows: metric and setting; columns: datasets; cells `mean ± std` over seeds."""
    import pandas as pd

    cells: dict[str, dict[str, str]] = {}
    order: list[str] = []

    def put(row: str, ds: str, text: str) -> None:
        if row not in cells:
            cells[row] = {}
            order.append(row)
        cells[row][ds] = text

    for rec in sorted(records, key=lambda r: (r["setting"] != "all", r["n_shot"])):
        ds = rec["dataset"]
        label = "all" if rec["setting"] == "all" else f"N={rec['n_shot']}"
        for m in ("top1", "top5"):
            s = rec["probe"][m]
            put(f"{m} {label}", ds, f"{s['mean']:.2f} ± {s['std']:.2f}")
        for m, v in rec.get("metrics", {}).items():
            put(m, ds, f"{v['value']:.2f}" if m == "knn_top1" else f"{v['value']:.3f}")
    datasets = sorted({r["dataset"] for r in records}, key=dataset_order)
    df = pd.DataFrame(
        [[cells[r].get(d, "") for d in datasets] for r in order], index=order, columns=datasets
    )
    return df.to_string()


def evaluate(cfg: EvalConfig, echo: Callable[[str], None] | None = print) -> list[dict]:
    """Run `cog-eval` for one model; returns the run records (also written as JSON)."""
    ev = Evaluator(cfg)
    records = ev.run()
    if echo is not None:
        random = " (RANDOM-INIT weights)" if cfg.random_init else ""
        echo(
            f"{ev.name}{random}, protocol {cfg.protocol}, seeds "
            f"{','.join(map(str, cfg.seeds))}: top-1/top-5 in %, mean ± population std"
        )
        echo(summary_table(records))
        echo(
            f"runs: {len(ev.written)} written, {len(ev.reused)} reused, under "
            f"{ev.out / 'runs' / ev.name}; leaderboard: {ev.out / 'leaderboard.csv'}"
        )
    return records
