"""The CSV leaderboard: schema, replacement by key, validation, and concurrent writers."""

from __future__ import annotations

import multiprocessing as mp

import pandas as pd
import pytest

from cog import CogError
from cog.bench.leaderboard import (
    COLUMNS,
    KEY,
    leaderboard_model_name,
    make_row,
    read_leaderboard,
    update_leaderboard,
)


def _row(model="resnet50", dataset="cog_l1", metric="top1", values=(70.0, 72.0), **kw):
    args = dict(
        model=model,
        group="sup",
        dataset=dataset,
        setting="all",
        n_shot=0,
        metric=metric,
        protocol="fast" if metric in ("top1", "top5") else "-",
        values=values,
        seeds=(22, 37)[: len(values)],
        run=f"runs/{model}/{dataset}_all_fast.json",
    )
    args.update(kw)
    return make_row(**args)


def test_row_mean_and_population_std():
    r = _row(values=(70.0, 72.0))
    assert r["mean"] == 71.0 and r["std"] == 1.0  # population std, not sample std (1.414)
    assert r["seeds"] == "22;37" and r["values"] == "70.0;72.0" and r["n_seeds"] == 2
    assert set(r) == set(COLUMNS)


@pytest.mark.parametrize(
    "kw",
    [
        dict(setting="some"),
        dict(metric="top3"),
        dict(metric="knn_top1", protocol="fast"),
        dict(setting="few-shot", n_shot=0),
        dict(n_shot=4),
        dict(values=(float("nan"), 1.0)),
        dict(values=(1.0,), seeds=(22, 37)),
    ],
)
def test_row_validation(kw):
    with pytest.raises(CogError):
        _row(**kw)


def test_update_replaces_rows_by_key(tmp_path):
    path = tmp_path / "results" / "leaderboard.csv"
    update_leaderboard(path, [_row(), _row(dataset="in1k"), _row(metric="top5")])
    update_leaderboard(path, [_row(values=(50.0, 50.0)), _row(model="vit", dataset="cog_l2")])
    df = read_leaderboard(path)
    assert list(df.columns) == list(COLUMNS)
    assert len(df) == 4 and not df.duplicated(list(KEY)).any()
    top1 = df[(df.model == "resnet50") & (df.dataset == "cog_l1") & (df.metric == "top1")]
    assert top1["mean"].tolist() == [50.0]
    # sorted: model, then in1k before cog_l1, top1 before top5
    assert df[["model", "dataset", "metric"]].values.tolist() == [
        ["resnet50", "in1k", "top1"],
        ["resnet50", "cog_l1", "top1"],
        ["resnet50", "cog_l1", "top5"],
        ["vit", "cog_l2", "top1"],
    ]
    # the file round-trips through plain pandas with the documented types
    raw = pd.read_csv(path)
    assert raw["n_shot"].dtype.kind == "i" and raw["mean"].dtype.kind == "f"
    assert set(raw["protocol"]) == {"fast"}


def test_random_init_rows_never_replace_trained_rows(tmp_path):
    path = tmp_path / "leaderboard.csv"
    update_leaderboard(path, [_row()])
    rand = leaderboard_model_name("resnet50", random_init=True)
    assert rand == "resnet50+random-init"
    update_leaderboard(path, [_row(model=rand, values=(1.0, 1.2))])
    df = read_leaderboard(path)
    assert sorted(df["model"]) == ["resnet50", "resnet50+random-init"]
    assert df.set_index("model").loc["resnet50", "mean"] == 71.0


def test_seed_independent_metrics_and_few_shot_rows(tmp_path):
    path = tmp_path / "leaderboard.csv"
    rows = [
        _row(metric="knn_top1", values=(40.0,), seeds=None),
        _row(metric="uniformity", values=(-3.5,), seeds=None),
        _row(setting="few-shot", n_shot=2),
        _row(setting="few-shot", n_shot=1),
    ]
    df = update_leaderboard(path, rows)
    assert df[["setting", "n_shot", "metric"]].values.tolist() == [
        ["all", 0, "knn_top1"],
        ["all", 0, "uniformity"],
        ["few-shot", 1, "top1"],
        ["few-shot", 2, "top1"],
    ]
    again = read_leaderboard(path)
    assert again.loc[0, "protocol"] == "-" and again.loc[0, "seeds"] == ""
    assert again.loc[1, "mean"] == -3.5


def test_bad_files_and_rows_leave_the_file_untouched(tmp_path):
    path = tmp_path / "leaderboard.csv"
    update_leaderboard(path, [_row()])
    before = path.read_bytes()
    bad = _row()
    del bad["mean"]
    with pytest.raises(CogError, match="mean"):
        update_leaderboard(path, [bad])
    with pytest.raises(CogError, match="share a key"):
        update_leaderboard(path, [_row(), _row()])
    assert path.read_bytes() == before

    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(CogError, match=r"other\.csv.*missing leaderboard column"):
        update_leaderboard(other, [_row()])
    assert other.read_text() == "a,b\n1,2\n"


def _writer(path: str, worker: int, n: int) -> None:
    for i in range(n):
        rows = [
            _row(model=f"m{worker}", dataset=f"cog_l{i % 5 + 1}", values=(float(i), float(i))),
            # every worker fights over this key: exactly one row must survive
            _row(model="shared", values=(float(worker), float(worker))),
        ]
        update_leaderboard(path, rows)


def test_concurrent_writers_lose_nothing(tmp_path):
    path = tmp_path / "leaderboard.csv"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), w, 10)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * 4
    df = read_leaderboard(path)
    assert not df.duplicated(list(KEY)).any()
    for w in range(4):
        mine = df[df.model == f"m{w}"].set_index("dataset")["mean"]
        # 10 updates over 5 datasets: each dataset's last write was i = 5..9
        assert mine.to_dict() == {f"cog_l{k + 1}": float(k + 5) for k in range(5)}
    assert len(df[df.model == "shared"]) == 1
    assert not list(tmp_path.glob(".leaderboard.csv.tmp-*"))


def test_cog_report_reads_what_we_write(tmp_path):
    report = pytest.importorskip("cog.bench.report")
    if not hasattr(report, "read_leaderboard"):
        pytest.skip("cog.bench.report has no read_leaderboard yet")
    path = tmp_path / "leaderboard.csv"
    rand = leaderboard_model_name("resnet50", random_init=True)
    update_leaderboard(
        path,
        [
            _row(),
            _row(model=rand),
            _row(metric="knn_top1", values=(40.0,), seeds=None),
            _row(setting="few-shot", n_shot=4),
        ],
    )
    df = report.read_leaderboard(path)
    assert len(df) == 4
    assert df.set_index("model")["random_init"].groupby(level=0).first().to_dict() == {
        "resnet50": False,
        rand: True,
    }


def test_rows_carry_their_identity_and_schema_1_files_are_upgraded(tmp_path, capsys):
    import json

    from cog.bench.leaderboard import IDENTITY_COLUMNS, SCHEMA, V1_COLUMNS, identity_from_run

    rec = {
        "dataset": "cog_l1",
        "weights_sha256": "ab" * 32,
        "data": {
            "train": {"mode": "exact"},
            "levels": {"path": "/x/levels.csv", "sha256": "0123456789abcdef" * 4},
            "splits": {"path": "/x/cog_concepts_split_file.pkl", "sha256": "f" * 64},
        },
    }
    ids = identity_from_run(rec)
    assert ids == {
        "level_set": "levels.csv@0123456789ab",
        "split_lists": "cog_concepts_split_file.pkl@ffffffffffff",
        "weights_sha256": "ab" * 32,
        "preprocess": "exact",
    }
    row = _row(**ids)
    assert row["schema"] == SCHEMA and row["level_set"] == "levels.csv@0123456789ab"
    assert _row(dataset="in1k", **ids)["level_set"] == "-"  # in1k has no level set
    # a schema-1 file: identities come from the run JSONs; a row without one is 'unknown'
    path = tmp_path / "leaderboard.csv"
    rows = [row, _row(model="gone")]
    pd.DataFrame(rows)[list(V1_COLUMNS)].to_csv(path, index=False)
    run = tmp_path / row["run"]
    run.parent.mkdir(parents=True)
    run.write_text(json.dumps(rec))
    df = read_leaderboard(path)
    assert "upgraded from leaderboard schema 1 to 2" in capsys.readouterr().err
    got = df.set_index("model")
    assert got.loc["resnet50", "level_set"] == "levels.csv@0123456789ab"
    assert (
        got.loc["resnet50", "preprocess"] == "exact" and got.loc["gone", "level_set"] == "unknown"
    )
    assert list(df.columns) == list(COLUMNS) and set(IDENTITY_COLUMNS) <= set(df.columns)
    update_leaderboard(path, [_row(model="new", **ids)])  # written back in the new schema
    assert "schema" in pd.read_csv(path).columns
    assert "upgraded" in capsys.readouterr().err
    assert read_leaderboard(path).set_index("model").loc["gone", "level_set"] == "unknown"
    assert "upgraded" not in capsys.readouterr().err
    wrong = pd.read_csv(path)
    wrong["schema"] = 9
    wrong.to_csv(path, index=False)
    with pytest.raises(CogError, match="leaderboard schema '9', this cog reads up to 2"):
        read_leaderboard(path)
