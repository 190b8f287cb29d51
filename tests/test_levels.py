"""The builder on the real ImageNet lists and the real fall 2011 image counts."""

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cog import CogError
from cog.cli.build_levels import main
from cog.concepts.levels import (
    DEFAULT_OUT,
    DEFAULT_POOL,
    DEFAULT_SEEN,
    MAPPING_FILE,
    LevelsConfig,
    bin_edges,
    build_levels,
    compare_levels,
    compare_with_official,
    read_levels,
)
from cog.concepts.levels_report import write_levels
from cog.concepts.lin import LinEngine
from cog.io import read_wnid_list

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.fixture(scope="module")
def built(hierarchy, counts_path):
    return build_levels(LevelsConfig(counts_file=counts_path), hierarchy, progress=False)


def test_filters_leave_the_documented_candidates(built):
    steps = {s.name: s for s in built.steps}
    assert steps["pool"].remaining == 21841
    assert steps["seen"].removed == 999  # teddy (n04399382) is not an IN-21K synset
    assert steps["leaf"].remaining == 5216  # protocol.md: 5,216 candidates
    assert all(s.applied for s in built.steps)
    assert [len(lv) for lv in built.levels] == [1000] * 5
    assert built.config.cut == "bins" and not built.warnings
    assert list(built.bins["size"]) == [1043, 1043, 1044, 1043, 1043]


def test_bin_edges_round_half_up():
    assert bin_edges(5216, 5) == [0, 1043, 2086, 3130, 4173, 5216]
    assert bin_edges(10, 4) == [0, 3, 5, 8, 10]  # 2.5 -> 3, 7.5 -> 8
    assert bin_edges(5000, 5) == [0, 1000, 2000, 3000, 4000, 5000]


def test_default_build_matches_the_check_values(built, hierarchy):
    h = hierarchy
    assert built.ic.name == "intrinsic" and built.ic.tree.size == 23546
    assert built.ic.values[h.by_name("dog.n.01")] == pytest.approx(0.478775, abs=1e-6)
    s = built.candidates.set_index("wnid")["similarity"]
    assert s["n01756089"] == pytest.approx(0.745205, abs=1e-6)  # prairie rattlesnake
    assert s["n07920349"] == pytest.approx(0.744177, abs=1e-6)  # cappuccino, 0.7441765
    ranges = list(zip(built.bins["max S"].round(4), built.bins["min S"].round(4), strict=True))
    assert ranges == [
        (0.9643, 0.7442),
        (0.7442, 0.6413),
        (0.6413, 0.5127),
        (0.5127, 0.3424),
        (0.3424, 0.0036),
    ]
    assert built.seconds < 30


def test_levels_respect_every_rule(built, hierarchy, counts_path):
    h = hierarchy
    seen = h.lookup(read_wnid_list(DEFAULT_SEEN))
    pool = set(read_wnid_list(DEFAULT_POOL))
    forbidden = set().union(*(h.ancestors[s] for s in seen))  # seen and their ancestors
    person = h.by_name("person.n.01")
    counts = pd.read_csv(counts_path, sep="\t", index_col="wnid")["fall11_images"]
    chosen = [w for lv in built.levels for w in lv]
    assert len(set(chosen)) == 5000
    for w in chosen:
        i = h.index[w]
        assert i not in forbidden
        assert person not in h.ancestors[i]
        assert counts[w] >= 782
    inner = {h.wnid(a) for w in pool for a in h.ancestors[h.index[w]] if a != h.index[w]}
    assert not inner & set(chosen)  # leaves of the IN-21K hierarchy only


def test_similarity_falls_from_l1_to_l5(built):
    t = built.table
    for k in range(1, 5):
        assert (
            t.loc[t.level == k, "similarity"].min() >= t.loc[t.level == k + 1, "similarity"].max()
        )
    means = [t.loc[t.level == k, "similarity"].mean() for k in range(1, 6)]
    assert means == sorted(means, reverse=True)
    assert t["similarity"].between(0, 1).all()


def test_bins_draw_is_seeded_and_each_level_comes_from_its_bin(built, hierarchy, counts_path):
    # (the same seed gives the same levels: test_levels_are_deterministic)
    other = build_levels(LevelsConfig(counts_file=counts_path, seed=1), hierarchy, progress=False)
    assert other.levels != built.levels
    assert other.candidates["rank"].equals(built.candidates["rank"])  # only the draw moved
    ranks = built.candidates.set_index("wnid")["rank"]
    for lv, (_, b) in zip(built.levels, built.bins.iterrows(), strict=True):
        assert ranks[lv].between(b["first rank"], b["last rank"]).all()
    # every bin gave up some concepts: the 216 left out are spread over the whole ranking
    out = built.candidates[(built.candidates["rank"] > 0) & (built.candidates["level"] == 0)]
    per_bin = np.histogram(out["rank"], bins=[b - 0.5 for b in bin_edges(5216, 5)])[0]
    assert list(per_bin) == [43, 43, 44, 43, 43]


def test_blocks_cut_stays_available(hierarchy, counts_path):
    r = build_levels(LevelsConfig(counts_file=counts_path, cut="blocks"), hierarchy, progress=False)
    assert r.bins is None
    assert any("216 least similar" in w for w in r.warnings)
    assert r.candidates.loc[r.candidates["level"] > 0, "rank"].max() == 5000


def test_without_counts_the_filter_is_skipped_loudly(hierarchy, tmp_path):
    r = build_levels(LevelsConfig(level_size=200), hierarchy, progress=False)
    step = next(s for s in r.steps if s.name == "min_images")
    assert not step.applied
    assert any("NO IMAGE COUNTS" in w for w in r.warnings)
    write_levels(r, tmp_path / "lv")
    assert "NO IMAGE COUNTS" in (tmp_path / "lv" / "report.md").read_text()


def test_switching_a_filter_off_keeps_more(hierarchy, counts_path):
    r = build_levels(
        LevelsConfig(counts_file=counts_path, skip=("leaf",)), hierarchy, progress=False
    )
    assert next(s for s in r.steps if s.name == "leaf").remaining == 6840
    assert not next(s for s in r.steps if s.name == "leaf").applied


def test_comparison_reports_membership_level_and_ranking_agreement(built, hierarchy):
    h = hierarchy
    seen = h.lookup(read_wnid_list(DEFAULT_SEEN))
    engine = LinEngine(h, built.ic)
    same = compare_with_official(built, built.levels, engine, seen).per_level.set_index("level")
    for col in ("membership %", "level agreement %", "given membership %"):
        assert (same[col] == 100.0).all(), col
    for k, (_, b) in enumerate(built.bins.iterrows(), start=1):
        assert b["first rank"] <= same.at[f"L{k}", "rank min"] <= same.at[f"L{k}", "rank max"]
        assert same.at[f"L{k}", "rank max"] <= b["last rank"]
    # levels one step off: all members, no level agreement, the ranking still sorts them
    rotated = built.levels[1:] + built.levels[:1]
    rot = compare_with_official(built, rotated, engine, seen).per_level.set_index("level")
    assert rot.at["all", "membership %"] == 100.0 and rot.at["all", "level agreement"] == 0
    assert rot.at["all", "given membership"] == 0  # each official block is one level off
    # an official concept the filters dropped is scored for the ranking but has no rank
    dropped = built.candidates[built.candidates["dropped_by"] == "min_images"].iloc[0]
    swapped = [list(lv) for lv in built.levels]
    swapped[4][-1] = dropped["wnid"]
    cmp = compare_with_official(built, swapped, engine, seen).per_level.set_index("level")
    assert cmp.at["L5", "unranked"] == 1 and cmp.at["L5", "membership"] == 999
    expected = engine.max_similarity(h.lookup([dropped["wnid"]]), seen).similarity[0]
    assert cmp.at["L5", "min S"] <= round(expected, 4) <= cmp.at["L1", "max S"]
    with pytest.raises(CogError, match=r"off.pkl: n99999999 is not a WordNet 3.0 noun"):
        compare_with_official(built, [["n99999999"]], engine, seen, "off.pkl")


def test_outputs_and_comparison(built, hierarchy, counts_path, tmp_path):
    official = tmp_path / "self.pkl"
    official.write_bytes(pickle.dumps(built.levels))
    cfg = LevelsConfig(counts_file=counts_path, compare_file=official)
    built = build_levels(cfg, hierarchy, progress=False)  # the same build, compared with itself
    out = write_levels(built, tmp_path / "levels")
    files = {p.name for p in out.iterdir()}
    assert {
        "levels.csv",
        MAPPING_FILE,
        "candidates.csv",
        "ic.tsv",
        "provenance.json",
        "report.md",
        "similarity.png",
        "similarity.svg",
    } <= files
    with open(out / MAPPING_FILE, "rb") as f:
        pkl = pickle.load(f)
    assert isinstance(pkl, list) and len(pkl) == 5 and all(len(lv) == 1000 for lv in pkl)
    assert read_levels(out) == pkl == read_levels(out / "levels.csv")
    csv = pd.read_csv(out / "levels.csv")
    assert list(csv.columns) == [
        "wnid",
        "name",
        "level",
        "similarity",
        "nearest_seen_wnid",
        "nearest_seen_name",
        "image_count",
    ]
    assert (csv["image_count"] >= 782).all()
    cmp = compare_levels(built.levels, built.levels)
    assert (cmp["overlap %"] == 100.0).all()
    shifted = compare_levels(built.levels, built.levels[1:] + built.levels[:1])
    assert (shifted["overlap"] == 0).all()
    report = (out / "report.md").read_text()
    assert f"Comparison with `{official}`" in report and "given membership %" in report
    assert "| L3 | 2087 | 3130 | 1044 | 1000 | 0.6413 | 0.5127 |" in report
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["cut"]["rule"] == "bins" and prov["cut"]["seed"] == 0
    assert "rounded half up" in prov["cut"]["rounding"]
    assert [b["size"] for b in prov["cut"]["bins"]] == [1043, 1043, 1044, 1043, 1043]
    assert prov["information_content"]["tree"]["nodes"] == 23546
    assert prov["inputs"]["compare_file"]["path"] == str(official.resolve())
    rows = {r["level"]: r for r in prov["comparison"]["per_level"]}
    assert rows["all"]["official"] == 5000 and rows["all"]["level agreement %"] == 100.0
    ic = pd.read_csv(out / "ic.tsv", sep="\t")
    assert {"wnid", "synset", "count", "ic", "in_tree", "tree_hyponyms"} <= set(ic.columns)
    assert len(ic) > 5000 and (ic["tree_size"] == 23546).all()


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(
    "lines,match",
    [
        (["n02084071", "dog"], r"pool.txt:2: 'dog' is not a wnid"),
        (["n02084071", "n02121808", "n02084071"], r"pool.txt:3: duplicate wnid n02084071"),
        (["n02084071", "n99999999"], r"pool.txt:2: n99999999 is not a WordNet 3.0 noun"),
    ],
)
def test_bad_pool_files_name_file_and_line(hierarchy, tmp_path, lines, match):
    pool = _write(tmp_path / "pool.txt", lines)
    with pytest.raises(CogError, match=match):
        build_levels(LevelsConfig(pool_file=pool), hierarchy, progress=False)


def test_empty_pool_and_too_few_concepts_are_errors(hierarchy, tmp_path):
    pool = _write(tmp_path / "pool.txt", read_wnid_list(DEFAULT_SEEN)[:20])
    with pytest.raises(CogError, match=r"no concept of .*pool.txt is left after the filters"):
        build_levels(LevelsConfig(pool_file=pool), hierarchy, progress=False)
    with pytest.raises(CogError, match=r"only \d+ eligible concepts .* need 25000"):
        build_levels(LevelsConfig(level_size=5000), hierarchy, progress=False)


@pytest.mark.slow
def test_cli_builds_compares_and_fails_cleanly(counts_path, tmp_path, capsys):
    out = tmp_path / "lv"
    small = ["--levels", "3", "--level-size", "300", "--counts", str(counts_path), "-q"]
    assert main([*small, "--out", str(out)]) == 0
    assert len(read_levels(out / MAPPING_FILE)) == 3
    assert main([*small, "--out", str(tmp_path / "lv2"), "--compare", str(out / MAPPING_FILE)]) == 0
    printed = capsys.readouterr().out
    assert "comparison with" in printed and "100.0" in printed
    # bad input: clear error, exit 2, the previous output untouched and nothing half-written
    before = (out / "levels.csv").read_bytes()
    bad = _write(tmp_path / "seen.txt", ["n02084071", "n0208407"])
    assert main([*small, "--seen", str(bad), "--out", str(out)]) == 2
    assert "seen.txt:2: 'n0208407' is not a wnid" in capsys.readouterr().err
    assert (out / "levels.csv").read_bytes() == before
    assert main([*small, "--level-size", "9000", "--out", str(tmp_path / "none")]) == 2
    assert not (tmp_path / "none").exists()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    bad_pkl = tmp_path / "bad.pkl"
    bad_pkl.write_bytes(pickle.dumps({"a": 1}))
    assert main([*small, "--out", str(out), "--compare", str(bad_pkl)]) == 2
    assert "expected a pickled list of levels" in capsys.readouterr().err


def test_levels_are_deterministic(built, hierarchy, counts_path):
    again = build_levels(LevelsConfig(counts_file=counts_path), hierarchy, progress=False)
    assert again.levels == built.levels
    np.testing.assert_array_equal(again.table["similarity"], built.table["similarity"])


@pytest.mark.slow
def test_imagenet_root_counts_drive_the_min_images_filter(hierarchy, tmp_path, capsys):
    pool_w = [
        w
        for w in read_wnid_list(DEFAULT_POOL)
        if hierarchy.descendant_counts[hierarchy.index[w]] == 0
    ][5000:5030]
    root = tmp_path / "in21k"
    for k, w in enumerate(pool_w):
        (root / w).mkdir(parents=True)
        for j in range(3 if k < 20 else 1):
            (root / w / f"{w}_{j}.JPEG").write_bytes(b"\xff\xd8")
    pool = _write(tmp_path / "pool.txt", pool_w)
    out = tmp_path / "lv"
    rc = main(
        [
            "--pool",
            str(pool),
            "--imagenet-root",
            str(root),
            "--min-images",
            "2",
            "--levels",
            "2",
            "--level-size",
            "10",
            "--skip-filter",
            "excluded",
            "-q",
            "--out",
            str(out),
        ]
    )
    assert rc == 0, capsys.readouterr().err
    cand = pd.read_csv(out / "candidates.csv")
    by_min = set(cand.loc[cand["dropped_by"] == "min_images", "wnid"])
    assert by_min and by_min <= set(pool_w[20:])
    assert (cand.set_index("wnid").loc[pool_w[20:], "dropped_by"] != "").all()
    assert set(cand.loc[cand["level"] > 0, "wnid"]) <= set(pool_w[:20])
    counts = pd.read_csv(out / "image_counts.tsv", sep="\t")
    assert dict(zip(counts["wnid"], counts["images"], strict=True))[pool_w[0]] == 3
    prov = (out / "provenance.json").read_text()
    assert '"imagenet_root"' in prov and '"images": 70' in prov


def embedded_vs_counts_lines(per_level: pd.DataFrame) -> list[str]:
    """The README's table of how far the shipped (no-counts) levels are from the counts build."""
    lines = [
        "| shipped level | in the counts build's levels | in its level of the same number |",
        "|---|---|---|",
    ]
    for r in per_level.itertuples(index=False):
        r = r._asdict()
        lines.append(
            f"| {r['level']} | {r['membership']:,} of {r['official']:,} ({r['membership_pct']}%)"
            f" | {r['level_agreement']:,} ({r['level_agreement_pct']}%) |"
        )
    return lines


def test_shipped_levels_distance_to_the_counts_build(built, hierarchy):
    if not (DEFAULT_OUT / MAPPING_FILE).is_file():
        pytest.skip("cog/resources/levels not built")
    embedded = build_levels(LevelsConfig(), hierarchy, progress=False)
    assert embedded.levels == read_levels(DEFAULT_OUT)  # shipped = the embedded default run
    seen = hierarchy.lookup(read_wnid_list(DEFAULT_SEEN))
    cmp = compare_with_official(built, embedded.levels, LinEngine(hierarchy, built.ic), seen)
    per_level = cmp.per_level.rename(columns=lambda c: c.replace(" %", "_pct").replace(" ", "_"))
    assert per_level.iloc[-1]["membership"] < 5000  # they differ: the README must say how much
    readme = README.read_text()
    for line in embedded_vs_counts_lines(per_level):
        assert line in readme, f"README.md lacks the measured line: {line}"
