"""The vectorised Lin engine must give nltk's `Synset.lin_similarity` values exactly."""

import numpy as np
import pytest

from cog.concepts.ic import (
    counts_ic,
    intrinsic_ic,
    intrinsic_wordnet_ic,
    read_ic_dat,
    read_image_counts,
)
from cog.concepts.levels import DEFAULT_POOL, DEFAULT_SEEN
from cog.concepts.lin import LinEngine
from cog.io import read_wnid_list


@pytest.fixture(scope="module")
def ids(hierarchy):
    seen = hierarchy.lookup(read_wnid_list(DEFAULT_SEEN))
    pool = hierarchy.lookup(read_wnid_list(DEFAULT_POOL))
    return seen, pool


@pytest.fixture(scope="module", params=["intrinsic", "intrinsic-wordnet", "counts", "dat"])
def ic(request, hierarchy, ids, counts_path, tmp_path_factory):
    if request.param == "intrinsic":
        return intrinsic_ic(hierarchy, ids[1])
    if request.param == "intrinsic-wordnet":
        return intrinsic_wordnet_ic(hierarchy)
    counts = counts_ic(hierarchy, read_image_counts(counts_path), smoothing=1.0)
    if request.param == "counts":
        return counts
    path = tmp_path_factory.mktemp("ic") / "ic-imagenet-add1.dat"
    counts.write_dat(hierarchy, path)
    return read_ic_dat(path, hierarchy)


def _special_nodes(h, pool):
    """Pool concepts with several parents, and instances (instance hypernyms)."""
    multi = [int(p) for p in pool if len(h.parents[p]) > 1]
    inst = [
        i
        for i, n in enumerate(h.names)
        if n in {"einstein.n.01", "mars.n.01", "mississippi.n.01", "paris.n.01"}
    ]
    return multi, inst


def test_matrix_equals_nltk_on_1200_random_pairs(reader, hierarchy, ids, ic):
    seen, pool = ids
    h = hierarchy
    rng = np.random.default_rng(0)
    multi, inst = _special_nodes(h, pool)
    assert len(multi) > 50 and len(inst) == 4
    queries = np.concatenate(
        [rng.choice(pool, 60, replace=False), rng.choice(multi, 30, replace=False), inst]
    )
    refs = np.concatenate([rng.choice(seen, 30, replace=False), inst[:2]])
    m = LinEngine(h, ic).matrix(queries, refs, chunk=17)
    nltk_ic = ic.nltk_dict(h)
    pairs = [(i, j) for i in range(len(queries)) for j in range(len(refs))]
    pick = rng.choice(len(pairs), 1200, replace=False)
    n_multi = n_inst = 0
    for k in pick:
        i, j = pairs[k]
        a, b = reader.synset(h.names[queries[i]]), reader.synset(h.names[refs[j]])
        expected = a.lin_similarity(b, nltk_ic)
        assert m[i, j] == pytest.approx(expected, rel=1e-12, abs=1e-12), (a, b)
        n_multi += queries[i] in multi
        n_inst += queries[i] in inst or refs[j] in inst
    assert n_multi > 100 and n_inst > 20


def test_max_similarity_is_the_argmax_over_all_seen(reader, hierarchy, ids, ic):
    seen, pool = ids
    h = hierarchy
    rng = np.random.default_rng(1)
    queries = rng.choice(pool, 40, replace=False)
    refs = rng.choice(seen, 60, replace=False)
    engine = LinEngine(h, ic)
    ms = engine.max_similarity(queries, refs, chunk=8)
    nltk_ic = ic.nltk_dict(h)
    for q, s, n in zip(queries, ms.similarity, ms.nearest, strict=True):
        a = reader.synset(h.names[q])
        values = [a.lin_similarity(reader.synset(h.names[r]), nltk_ic) for r in refs]
        assert s == pytest.approx(max(values), rel=1e-12)
        assert n == refs[int(np.argmax(values))]
        assert engine.similarity(int(q), int(n)) == pytest.approx(s, rel=1e-12)


def test_lin_on_the_hand_built_tree_by_hand(toy_hierarchy):
    h = toy_hierarchy
    n = {name.split(".")[0]: i for i, name in enumerate(h.names)}
    ic = intrinsic_ic(h, np.array([n["cat"], n["puppy"], n["oak"]]), "toy")
    e = LinEngine(h, ic)
    # IC (tests/test_ic.py): entity 0, animal 1/3, plant = dog = pet 2/3, leaves and fern 1
    assert e.similarity(n["cat"], n["puppy"]) == pytest.approx(1 / 3)  # lcs animal: 2/3 / 2
    assert e.similarity(n["puppy"], n["dog"]) == pytest.approx(4 / 5)  # 4/3 / (1 + 2/3)
    assert e.similarity(n["cat"], n["oak"]) == 0.0  # lcs entity, IC 0
    assert e.similarity(n["oak"], n["fern"]) == pytest.approx(2 / 3)  # lcs plant
    seen = np.array([n["dog"], n["oak"]])
    ms = e.max_similarity(np.array([n["cat"], n["puppy"], n["fern"]]), seen, chunk=2)
    np.testing.assert_allclose(ms.similarity, [2 / 5, 4 / 5, 2 / 3])  # cat: 2/3 / (1 + 2/3)
    np.testing.assert_array_equal(ms.nearest, [n["dog"], n["dog"], n["oak"]])
    np.testing.assert_allclose(e.matrix(seen, seen), [[1, 0], [0, 1]])
    # over all nouns fern counts under plant: IC(plant) = 1/2, so Lin(oak, fern) = 1/2
    wide = LinEngine(h, intrinsic_wordnet_ic(h))
    assert wide.similarity(n["oak"], n["fern"]) == pytest.approx(1 / 2)


def test_identical_concepts_have_similarity_one(hierarchy, ids):
    seen, pool = ids
    ms = LinEngine(hierarchy, intrinsic_ic(hierarchy, pool)).max_similarity(seen[:50], seen)
    np.testing.assert_allclose(ms.similarity, 1.0)
    np.testing.assert_array_equal(ms.nearest, seen[:50])
