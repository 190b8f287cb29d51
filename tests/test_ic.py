import tarfile

import numpy as np
import pytest
from nltk.corpus.reader.wordnet import WordNetICCorpusReader, information_content

from cog import CogError
from cog.concepts.ic import (
    count_imagenet_root,
    counts_ic,
    intrinsic_ic,
    intrinsic_wordnet_ic,
    read_ic_dat,
    read_image_counts,
)
from cog.concepts.levels import DEFAULT_POOL
from cog.io import read_wnid_list

TOY_POOL = ["cat.n.01", "puppy.n.01", "oak.n.01"]


def test_intrinsic_ic_counts_hyponyms_in_the_pool_tree_by_hand(toy_hierarchy):
    h = toy_hierarchy
    ic = intrinsic_ic(h, np.array([h.by_name(n) for n in TOY_POOL]), "toy")
    # tree = pool + hypernyms = every node but fern: N = 8. hypo: entity 7, animal 3
    # (dog, cat, puppy), plant 1 (oak; fern is outside), dog 1, pet 1, leaves 0.
    # IC = 1 - ln(hypo + 1) / ln 8: entity 0, animal 1 - 2/3, plant/dog/pet 1 - 1/3.
    expected = {
        "entity": 0.0,
        "animal": 1 / 3,
        "plant": 2 / 3,
        "dog": 2 / 3,
        "pet": 2 / 3,
        "cat": 1.0,
        "puppy": 1.0,
        "oak": 1.0,
        "fern": 1.0,  # outside the tree: nothing below it, like a leaf
    }
    for name, value in expected.items():
        assert ic.values[h.by_name(f"{name}.n.01")] == pytest.approx(value, abs=1e-12), name
    assert ic.tree.size == 8 and not ic.tree.members[h.by_name("fern.n.01")]
    assert "3 synsets + hypernyms = 8 nodes" in ic.description
    t = ic.table(h).set_index("synset")
    assert t.loc["plant.n.01", "tree_hyponyms"] == 1 and (t["tree_size"] == 8).all()
    # the WordNet-wide variant counts fern too: N = 9, plant hypo 2, IC 1 - ln 3 / ln 9 = 1/2
    wide = intrinsic_wordnet_ic(h)
    assert wide.name == "intrinsic-wordnet" and wide.tree.size == 9
    assert wide.values[h.by_name("plant.n.01")] == pytest.approx(0.5, abs=1e-12)


def test_intrinsic_ic_over_the_fall11_tree_matches_the_check_values(hierarchy):
    h = hierarchy
    pool = h.lookup(read_wnid_list(DEFAULT_POOL))
    ic = intrinsic_ic(h, pool)
    assert ic.tree.size == 23546
    assert ic.values[h.by_name("dog.n.01")] == pytest.approx(0.478775, abs=1e-6)
    assert ic.values[h.by_name("entity.n.01")] == pytest.approx(0.0, abs=1e-12)
    leaves = ic.tree.members & (ic.tree.hyponyms == 0)
    inner = {a for p in pool for a in h.ancestors[p] if a != p}
    assert leaves.sum() == len(set(pool.tolist()) - inner)  # the tree's leaves: pool leaves
    np.testing.assert_allclose(ic.values[leaves], 1.0)


def test_intrinsic_wordnet_ic_is_seco_over_all_nouns(hierarchy):
    ic = intrinsic_wordnet_ic(hierarchy).values
    h = hierarchy
    assert ic[h.by_name("entity.n.01")] == pytest.approx(0.0, abs=1e-12)
    leaves = h.descendant_counts == 0
    np.testing.assert_allclose(ic[leaves], 1.0)
    dog = h.by_name("dog.n.01")
    expected = 1 - np.log(h.descendant_counts[dog] + 1) / np.log(82115)
    assert ic[dog] == pytest.approx(expected)
    assert 0 < ic[dog] < 1


def test_counts_ic_adds_each_synset_once_to_each_ancestor(hierarchy):
    h = hierarchy
    person = h.by_name("person.n.01")  # two parents, both under physical_entity.n.01
    ic = counts_ic(h, {h.wnid(person): 10, h.wnid(h.by_name("dog.n.01")): 30})
    assert ic.total == 40
    assert ic.counts[h.by_name("physical_entity.n.01")] == 40
    assert ic.counts[h.by_name("organism.n.01")] == 40
    assert ic.counts[h.by_name("causal_agent.n.01")] == 10
    assert ic.counts[h.by_name("entity.n.01")] == 40
    assert np.isinf(ic.values[h.by_name("cat.n.01")])


def test_dat_files_round_trip_through_nltk(reader, hierarchy, tmp_path, monkeypatch):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path), *nltk.data.path])
    h = hierarchy
    ic = counts_ic(
        h, {h.wnid(h.by_name("dog.n.01")): 5, h.wnid(h.by_name("tabby.n.01")): 7}, smoothing=1.0
    )
    ic.write_dat(h, tmp_path / "ic-test.dat")
    nltk_ic = WordNetICCorpusReader(str(tmp_path), [r".*\.dat"]).ic("ic-test.dat")
    ours = read_ic_dat(tmp_path / "ic-test.dat", h)
    assert ours.total == pytest.approx(nltk_ic["n"][0])
    for name in ("dog.n.01", "tabby.n.01", "entity.n.01", "carnivore.n.01", "oak.n.01"):
        i = h.by_name(name)
        assert ours.values[i] == pytest.approx(information_content(reader.synset(name), nltk_ic))
        assert ours.values[i] == pytest.approx(ic.values[i])


def test_bad_dat_line_names_file_and_line(hierarchy, tmp_path):
    p = tmp_path / "bad.dat"
    p.write_text("wnver::x\n1740n 10.0 ROOT\nnonsense\n")
    with pytest.raises(CogError, match=r"bad.dat:3: expected"):
        read_ic_dat(p, hierarchy)


def test_read_image_counts_with_and_without_header(tmp_path, counts_path):
    real = read_image_counts(counts_path)
    assert len(real) == 21841 and sum(real.values()) == 14197114
    flickr = read_image_counts(counts_path, column="fall11_flickr_images")
    assert sum(flickr.values()) < sum(real.values())
    p = tmp_path / "c.csv"
    p.write_text("n02084071,12\nn02121808,3\n")
    assert read_image_counts(p) == {"n02084071": 12, "n02121808": 3}
    p.write_text("wnid,images\nn02084071,12\nn02084071,3\n")
    with pytest.raises(CogError, match=r"c.csv:3: duplicate wnid n02084071"):
        read_image_counts(p)
    p.write_text("wnid\timages\nn02084071\tmany\n")
    with pytest.raises(CogError, match=r"c.csv:2: expected a wnid and an integer count"):
        read_image_counts(p)
    with pytest.raises(CogError, match="no column 'nope'"):
        read_image_counts(counts_path, column="nope")


def test_count_imagenet_root_folders_and_tars(tmp_path):
    (tmp_path / "n02084071").mkdir()
    for k in range(3):
        (tmp_path / "n02084071" / f"n02084071_{k}.JPEG").write_bytes(b"x")
    (tmp_path / "n02084071" / "notes.txt").write_text("not an image")
    src = tmp_path / "n02121808_1.JPEG"
    src.write_bytes(b"y")
    with tarfile.open(tmp_path / "n02121808.tar", "w") as t:
        t.add(src, arcname="n02121808_1.JPEG")
        t.add(src, arcname="n02121808_2.JPEG")
    src.unlink()
    assert count_imagenet_root(tmp_path) == {"n02084071": 3, "n02121808": 2}
    with pytest.raises(CogError, match="no <wnid>/ folder"):
        count_imagenet_root(tmp_path / "n02084071")
