import os
import shutil

import pytest

from cog import CogError
from cog.concepts.wordnet import LEXNAMES, NounHierarchy, load_wordnet


def test_wordnet_is_30_with_all_noun_synsets(reader, hierarchy):
    assert reader.get_version() == "3.0"
    assert reader.synset_from_pos_and_offset("n", 2084071).name() == "dog.n.01"
    assert len(hierarchy) == 82115
    assert hierarchy.names[hierarchy.index["n02084071"]] == "dog.n.01"
    assert len(LEXNAMES) == 45


def test_hierarchy_keeps_multiple_and_instance_inheritance(reader, hierarchy):
    # person.n.01 has two hypernyms (organism and causal agent)
    person = hierarchy.by_name("person.n.01")
    parents = {hierarchy.names[p] for p in hierarchy.parents[person]}
    assert parents == {"organism.n.01", "causal_agent.n.01"}
    # einstein.n.01 is an instance of physicist.n.01
    einstein = hierarchy.by_name("einstein.n.01")
    assert hierarchy.by_name("physicist.n.01") in hierarchy.parents[einstein]
    assert hierarchy.by_name("entity.n.01") in hierarchy.ancestors[einstein]
    assert einstein in hierarchy.ancestors[einstein]


def test_descendant_counts_match_nltk_closure(reader, hierarchy):
    for name in ("dog.n.01", "person.n.01", "entity.n.01", "tabby.n.01"):
        s = reader.synset(name)
        below = set(s.closure(lambda x: x.hyponyms() + x.instance_hyponyms()))
        assert hierarchy.descendant_counts[hierarchy.by_name(name)] == len(below)


def test_lookup_names_file_and_line(hierarchy):
    with pytest.raises(CogError, match=r"seen.txt:7: n99999999 is not a WordNet 3.0 noun"):
        hierarchy.lookup(["n02084071", "n99999999"], "seen.txt", {"n99999999": 7})


def _copy_dict(reader, dest):
    root = reader.root.path if hasattr(reader.root, "path") else str(reader.root)
    if not os.path.isdir(root):
        pytest.skip(f"WordNet is read from {root}, not a folder this test can copy")
    shutil.copytree(root, dest)
    return dest


@pytest.mark.slow
def test_explicit_folder_is_installed_and_read(reader, tmp_path, monkeypatch):
    monkeypatch.setenv("COG_NLTK_DATA", str(tmp_path / "nltk_data"))
    src = _copy_dict(reader, tmp_path / "dict")
    (src / "lexnames").unlink()  # as in Debian's package
    wn = load_wordnet(src, download=False)
    assert wn.get_version() == "3.0"
    assert (tmp_path / "nltk_data" / "corpora" / "wordnet" / "lexnames").is_file()
    assert len(NounHierarchy.from_reader(wn)) == 82115


def test_refuses_other_wordnet_versions(reader, tmp_path, monkeypatch):
    monkeypatch.setenv("COG_NLTK_DATA", str(tmp_path / "nltk_data"))
    src = _copy_dict(reader, tmp_path / "dict31")
    text = (src / "data.adj").read_text(encoding="latin-1")
    (src / "data.adj").write_text(
        text.replace("WordNet 3.0 Copyright", "WordNet 3.1 Copyright"), encoding="latin-1"
    )
    with pytest.raises(CogError, match=r"WordNet 3.1 found, but ImageNet ids are WordNet 3.0"):
        load_wordnet(src, download=False)


def test_missing_folder_says_how_to_get_wordnet(tmp_path):
    with pytest.raises(CogError, match=r"nltk\.download"):
        load_wordnet(tmp_path / "nope", download=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(CogError, match="not a WordNet dict folder"):
        load_wordnet(tmp_path / "empty", download=False)


def test_hierarchy_read_from_data_noun_equals_nltks_synsets(reader, hierarchy):
    synsets = list(reader.all_synsets("n"))
    h = hierarchy
    assert [s.offset() for s in synsets] == h.offsets.tolist()
    assert [s.name() for s in synsets] == h.names
    assert [s.lemma_names()[0].replace("_", " ") for s in synsets] == h.lemmas
    pos = {s.offset(): i for i, s in enumerate(synsets)}
    nltk_parents = [
        sorted({pos[p.offset()] for p in s.hypernyms() + s.instance_hypernyms()}) for s in synsets
    ]
    assert nltk_parents == h.parents
    assert sum(len(p) > 1 for p in h.parents) > 1000  # multiple inheritance is kept
    assert h.parents[h.by_name("einstein.n.01")]  # instance hypernyms count as parents
