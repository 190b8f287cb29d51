"""WordNet 3.0 through nltk, and the noun hierarchy as flat arrays.

ImageNet ids are WordNet 3.0 offsets (n02084071 = dog.n.01), so any other WordNet version
silently maps ids to the wrong concepts: we verify the version and refuse others.

Where WordNet comes from, in order: an explicit folder (argument or $COG_WORDNET), nltk's
data path, `nltk.download("wordnet")` when online, Debian's wordnet-base package
(/usr/share/wordnet), else an error that says how to get it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import shutil
import socket
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from cog import CogError
from cog.io import WNID_RE, sha256_file

log = logging.getLogger(__name__)

WORDNET_VERSION = "3.0"
# A fixed point of WordNet 3.0 that moved in 3.1: dog.n.01 has offset 02084071 in 3.0.
_CHECK_OFFSET, _CHECK_NAME = 2084071, "dog.n.01"
DEBIAN_WORDNET = Path("/usr/share/wordnet")
# The 45 lexicographer files of WordNet 3.0 (lexnames(5WN)); nltk needs them in a file
# called `lexnames` that Debian's packages do not ship.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_LEX_CATEGORY = {"noun": 1, "verb": 2, "adj": 3, "adv": 4}
_DICT_FILES = (
    "data.noun",
    "index.noun",
    "data.verb",
    "index.verb",
    "data.adj",
    "index.adj",
    "data.adv",
    "index.adv",
)
HOW_TO_GET = (
    "Get WordNet 3.0 one of these ways: "
    "`python -c \"import nltk; nltk.download('wordnet')\"` (online); "
    "`sudo apt-get install wordnet-base wordnet-sense-index` (Debian/Ubuntu); "
    "or pass --wordnet DIR / set COG_WORDNET=DIR to a WordNet 3.0 'dict' folder."
)


def cog_nltk_data() -> Path:
    """Where cog installs WordNet copies that nltk may read ($COG_NLTK_DATA)."""
    return Path(os.environ.get("COG_NLTK_DATA", Path.home() / ".cache" / "cog" / "nltk_data"))


def _lexnames_text() -> str:
    return "".join(
        f"{i:02d}\t{name}\t{_LEX_CATEGORY[name.split('.')[0]]}\n" for i, name in enumerate(LEXNAMES)
    )


def _new_reader(root: Path | str):
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "multilingual functions are not available"
        return WordNetCorpusReader(str(root), None)


def _install_dict(src: Path) -> Path:
    """Copy a WordNet dict folder under cog's nltk data dir (nltk refuses other paths)."""
    missing = [f for f in _DICT_FILES if not (src / f).is_file()]
    if missing:
        raise CogError(
            f"{src}: not a WordNet dict folder (missing {', '.join(missing)}). " + HOW_TO_GET
        )
    dest = cog_nltk_data() / "corpora" / "wordnet"
    stamp = f"{src.resolve()} {sha256_file(src / 'data.noun')}\n"
    marker = dest / ".cog-source"
    if not (marker.is_file() and marker.read_text() == stamp):
        tmp = dest.with_name(f".wordnet.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for f in src.iterdir():
            if f.is_file():
                shutil.copyfile(f, tmp / f.name)
        if not (tmp / "lexnames").is_file():
            (tmp / "lexnames").write_text(_lexnames_text())
        (tmp / ".cog-source").write_text(stamp)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
        log.info("installed WordNet from %s into %s", src, dest)
    return dest


def _register(data_dir: Path) -> None:
    import nltk

    if str(data_dir) not in nltk.data.path:
        nltk.data.path.insert(0, str(data_dir))


def _from_nltk_path():
    import nltk

    for name in ("corpora/wordnet", "corpora/wordnet.zip/wordnet/"):
        with contextlib.suppress(LookupError):
            return _new_reader(nltk.data.find(name))
    return None


def _try_download(timeout: float = 15.0) -> bool:
    import nltk

    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)
    try:
        sink = io.StringIO()  # nltk prints its own failure banner even when quiet
        with warnings.catch_warnings(), contextlib.redirect_stdout(sink):
            warnings.simplefilter("ignore")
            return bool(
                nltk.download("wordnet", quiet=True, raise_on_error=True, print_error_to=sink)
            )
    except Exception as e:  # offline, proxy, refused: fall through to the next source
        log.info("nltk.download('wordnet') failed: %s", e)
        return False
    finally:
        socket.setdefaulttimeout(old)


def verify_version(reader, source: str) -> None:
    """Refuse any WordNet but 3.0: ImageNet wnids are 3.0 offsets."""
    version = reader.get_version()
    ok_offset = False
    with contextlib.suppress(Exception):
        ok_offset = reader.synset_from_pos_and_offset("n", _CHECK_OFFSET).name() == _CHECK_NAME
    if version != WORDNET_VERSION or not ok_offset:
        raise CogError(
            f"{source}: WordNet {version} found, but ImageNet ids are WordNet "
            f"{WORDNET_VERSION} offsets (n02084071 must be {_CHECK_NAME}). " + HOW_TO_GET
        )


def load_wordnet(path: str | Path | None = None, *, download: bool = True):
    """Return an nltk WordNetCorpusReader for WordNet 3.0, found as the module doc says."""
    explicit = path or os.environ.get("COG_WORDNET")
    if explicit:
        src = Path(explicit)
        if (src / "corpora" / "wordnet").is_dir():
            src = src / "corpora" / "wordnet"
        if not src.is_dir():
            raise CogError(f"{src}: no such folder (given as the WordNet folder). " + HOW_TO_GET)
        dest = _install_dict(src)
        _register(dest.parent.parent)
        reader, source = _new_reader(dest), str(src)
    else:
        reader, source = _from_nltk_path(), "nltk data path"
        if reader is None and download and _try_download():
            reader, source = _from_nltk_path(), "nltk.download('wordnet')"
        if reader is None:
            debian = Path(os.environ.get("WNSEARCHDIR", DEBIAN_WORDNET))
            if (debian / "data.noun").is_file():
                dest = _install_dict(debian)
                _register(dest.parent.parent)
                reader, source = _new_reader(dest), str(debian)
        if reader is None:
            raise CogError(
                "WordNet 3.0 was not found (tried $COG_WORDNET, nltk's data path "
                "and nltk.download, /usr/share/wordnet). " + HOW_TO_GET
            )
    verify_version(reader, source)
    reader.cog_source = source
    return reader


def _noun_rows(reader):
    """(offset, first lemma, hypernym and instance-hypernym offsets) per synset line of
    data.noun, in file order (WordNet's data file format, wndb(5WN))."""
    with (
        reader.root.join("data.noun").open() as raw,
        io.TextIOWrapper(raw, encoding="utf-8") as f,
    ):
        for line in f:
            if line.startswith(" "):
                continue  # the licence header
            fields = line.split(" | ", 1)[0].split()
            n_words = int(fields[3], 16)
            start = 5 + 2 * n_words
            ptr = fields[start : start + 4 * int(fields[start - 1])]
            parents = {
                int(ptr[k + 1])
                for k in range(0, len(ptr), 4)
                if ptr[k] in ("@", "@i") and ptr[k + 2] == "n"
            }
            yield int(fields[0]), fields[4], parents


def wnid_of(offset: int) -> str:
    return f"n{offset:08d}"


@dataclass
class NounHierarchy:
    """The WordNet noun graph as integer arrays: node i has `offsets[i]`, `names[i]` and
    parents `parents[i]` (hypernyms and instance hypernyms: multiple inheritance included)."""

    offsets: np.ndarray
    names: list[str]
    lemmas: list[str]
    parents: list[list[int]]
    source: str = ""
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {wnid_of(int(o)): i for i, o in enumerate(self.offsets)}

    @classmethod
    def from_reader(cls, reader) -> NounHierarchy:
        """The noun graph of `reader`'s WordNet, in nltk's `all_synsets("n")` order and with
        its synset names, read from data.noun directly (nltk's line reader is ~7x slower)."""
        rows = list(_noun_rows(reader))
        pos = {off: i for i, (off, _, _) in enumerate(rows)}
        senses = getattr(reader, "_lemma_pos_offset_map", {})
        names = []
        for off, word, _ in rows:
            offsets = senses.get(word.lower(), {}).get("n", [])
            if off in offsets:  # nltk names a synset by its first lemma's sense number
                names.append(f"{word.lower()}.n.{offsets.index(off) + 1:02d}")
            else:
                names.append(reader.synset_from_pos_and_offset("n", off).name())
        return cls(
            offsets=np.array([off for off, _, _ in rows], dtype=np.int64),
            names=names,
            lemmas=[word.replace("_", " ") for _, word, _ in rows],
            parents=[sorted(pos[p] for p in parents) for _, _, parents in rows],
            source=getattr(reader, "cog_source", ""),
        )

    def __len__(self) -> int:
        return len(self.names)

    def wnid(self, i: int) -> str:
        return wnid_of(int(self.offsets[i]))

    def lookup(
        self, wnids: list[str], source: str = "input", lines: dict[str, int] | None = None
    ) -> np.ndarray:
        """Node indices of `wnids`; an id that is not a WordNet 3.0 noun is a CogError."""
        out = np.empty(len(wnids), dtype=np.int64)
        for k, w in enumerate(wnids):
            i = self.index.get(w)
            if i is None:
                where = f"{source}:{lines[w]}" if lines and w in lines else source
                why = "malformed" if not WNID_RE.match(w) else "no WordNet 3.0 noun has this offset"
                raise CogError(
                    f"{where}: {w} is not a WordNet 3.0 noun synset ({why}); ImageNet "
                    "ids are 'n' + the 8-digit WordNet 3.0 noun offset. Fix or "
                    "remove that line."
                )
            out[k] = i
        return out

    @cached_property
    def ancestors(self) -> list[frozenset[int]]:
        """Each node's ancestors *including itself* (nltk's common_hypernyms set)."""
        memo: list[frozenset[int] | None] = [None] * len(self)
        for start in range(len(self)):
            stack = [start]
            while stack:
                i = stack[-1]
                if memo[i] is not None:
                    stack.pop()
                    continue
                todo = [p for p in self.parents[i] if memo[p] is None]
                if todo:
                    stack.extend(todo)
                    continue
                acc = {i}
                for p in self.parents[i]:
                    acc |= memo[p]  # type: ignore[arg-type]
                memo[i] = frozenset(acc)
                stack.pop()
        return memo  # type: ignore[return-value]

    @cached_property
    def descendant_counts(self) -> np.ndarray:
        """Number of distinct proper descendants (hyponyms and instances, any depth)."""
        counts = np.zeros(len(self), dtype=np.int64)
        for anc in self.ancestors:
            counts[list(anc)] += 1
        return counts - 1

    def descendants_of(self, roots: np.ndarray) -> np.ndarray:
        """Boolean mask: nodes that are one of `roots` or below one of them."""
        roots_set = {int(r) for r in roots}
        return np.array([not roots_set.isdisjoint(a) for a in self.ancestors], dtype=bool)

    def by_name(self, name: str) -> int:
        """Node of an nltk synset name such as 'person.n.01'."""
        try:
            return self.names.index(name)
        except ValueError:
            raise CogError(
                f"{name!r} is not a WordNet 3.0 noun synset name (expected e.g. person.n.01)"
            ) from None


if __name__ == "__main__":
    import sys

    try:
        wn = load_wordnet()
    except CogError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(f"WordNet {wn.get_version()} ready (from {wn.cog_source})")
