"""Build the ImageNet-CoG levels (protocol.md section 1) and read level files.

Data enters as wnid lists (seen set, pool), optional image counts and an IC source; each
step of the protocol is a named filter that can be switched off; the eligible concepts are
ranked by S(c) = max over seen c' of Lin(c, c') and cut into levels, L1 closest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cog import CogError
from cog.concepts.ic import (
    InformationContent,
    count_imagenet_root,
    counts_ic,
    intrinsic_ic,
    intrinsic_wordnet_ic,
    read_ic_dat,
    read_image_counts,
)
from cog.concepts.lin import LinEngine
from cog.concepts.wordnet import NounHierarchy, load_wordnet
from cog.io import read_wnid_list, sha256_file, wnid_line_numbers
from cog.resources import LEVELS, POOL_LIST, SEEN_LIST, resource_path
from cog.safe_pickle import safe_load

# the shipped lists and levels are package data (cog/resources/README.md)
DEFAULT_SEEN = resource_path(SEEN_LIST)
DEFAULT_POOL = resource_path(POOL_LIST)
SHIPPED_LEVELS = resource_path(LEVELS)
DEFAULT_OUT = SHIPPED_LEVELS
# where cog-build-splits writes in a checkout (the outputs rule is issue 20's)
SPLITS_DIR = Path(__file__).resolve().parents[2] / "splits"
MAPPING_FILE = "cog_levels_mapping_file.pkl"
FILTERS = ("seen", "ancestors", "excluded", "min_images", "leaf")
IC_SOURCES = ("intrinsic", "intrinsic-wordnet", "counts", "file")
CUT_RULES = ("bins", "blocks")
BINS_ROUNDING = (
    "bin k of L (k = 0..L-1) holds ranks floor(k*N/L + 1/2) + 1 .. floor((k+1)*N/L + 1/2) "
    "of the N ranked candidates (bin edges at k*N/L rounded half up)"
)


@dataclass
class LevelsConfig:
    """Every option of a levels build; the defaults are the embedded run's."""

    seen_file: Path = DEFAULT_SEEN
    pool_file: Path = DEFAULT_POOL
    counts_file: Path | None = None
    counts_column: str | None = None
    imagenet_root: Path | None = None
    ic: str = "intrinsic"
    ic_file: Path | None = None
    ic_smoothing: float = 0.0
    skip: tuple[str, ...] = ()
    min_images: int = 782
    exclude_subtrees: tuple[str, ...] = ("person.n.01",)
    exclude_file: Path | None = None
    cut: str = "bins"
    n_levels: int = 5
    level_size: int = 1000
    seed: int = 0
    wordnet: Path | None = None
    compare_file: Path | None = None

    def validate(self) -> None:
        bad = [s for s in self.skip if s not in FILTERS]
        if bad:
            raise CogError(f"unknown filter(s) {bad}; the filters are {list(FILTERS)}")
        if self.ic not in IC_SOURCES:
            raise CogError(f"unknown IC source {self.ic!r}; choose one of {list(IC_SOURCES)}")
        if self.cut not in CUT_RULES:
            raise CogError(f"unknown cut rule {self.cut!r}; choose one of {list(CUT_RULES)}")
        if self.ic == "file" and self.ic_file is None:
            raise CogError("--ic file needs --ic-file FILE.dat (an nltk-format IC file)")
        if self.ic == "counts" and self.counts_file is None and self.imagenet_root is None:
            raise CogError(
                "--ic counts needs image counts: pass --counts FILE or --imagenet-root DIR"
            )
        if self.counts_file is not None and self.imagenet_root is not None:
            raise CogError("pass either --counts or --imagenet-root, not both")
        if self.n_levels < 1 or self.level_size < 1:
            raise CogError("--levels and --level-size must be at least 1")


@dataclass
class Step:
    name: str
    description: str
    applied: bool
    remaining: int
    removed: int


@dataclass
class LevelsComparison:
    """How a build relates to an official level file (see `compare_with_official`)."""

    per_level: pd.DataFrame  # one row per official level, then an "all" row
    confusion: pd.DataFrame  # cog's levels against the official ones

    def as_dict(self) -> dict:
        return {
            "per_level": self.per_level.to_dict(orient="records"),
            "confusion": self.confusion.to_dict(orient="records"),
        }


@dataclass
class LevelsResult:
    """A built set of levels, with everything needed to write and explain it."""

    config: LevelsConfig
    levels: list[list[str]]
    candidates: pd.DataFrame  # one row per pool concept: fate, similarity, level
    steps: list[Step]
    ic: InformationContent
    ic_table: pd.DataFrame
    image_counts: dict[str, int] | None
    warnings: list[str] = field(default_factory=list)
    inputs: dict[str, dict] = field(default_factory=dict)
    wordnet_source: str = ""
    seconds: float = 0.0
    bins: pd.DataFrame | None = None  # the rank bins of a `bins` cut
    comparison: LevelsComparison | None = None

    @property
    def table(self) -> pd.DataFrame:
        """The selected concepts, one row each, L1 first and by decreasing similarity."""
        cols = [
            "wnid",
            "name",
            "level",
            "similarity",
            "nearest_seen_wnid",
            "nearest_seen_name",
            "image_count",
        ]
        sel = self.candidates[self.candidates["level"] > 0]
        return sel.sort_values(["level", "rank"])[cols].reset_index(drop=True)


def _file_record(path: Path | None) -> dict | None:
    if path is None:
        return None
    return {"path": str(Path(path).resolve()), "sha256": sha256_file(path)}


def _load_ic(
    cfg: LevelsConfig, h: NounHierarchy, pool: np.ndarray, counts: dict[str, int] | None
) -> InformationContent:
    if cfg.ic == "intrinsic":
        return intrinsic_ic(h, pool, Path(cfg.pool_file).name)
    if cfg.ic == "intrinsic-wordnet":
        return intrinsic_wordnet_ic(h)
    if cfg.ic == "file":
        return read_ic_dat(cfg.ic_file, h)  # type: ignore[arg-type]
    return counts_ic(h, counts or {}, smoothing=cfg.ic_smoothing)


def build_levels(
    cfg: LevelsConfig, hierarchy: NounHierarchy | None = None, progress: bool = True
) -> LevelsResult:
    """Run the protocol's filters, score the eligible pool by max-Lin and cut the levels."""
    t0 = time.perf_counter()
    cfg.validate()
    warnings: list[str] = []
    official = read_levels(cfg.compare_file) if cfg.compare_file is not None else None
    seen_w = read_wnid_list(cfg.seen_file)
    pool_w = read_wnid_list(cfg.pool_file)
    if hierarchy is None:
        hierarchy = NounHierarchy.from_reader(load_wordnet(cfg.wordnet))
    h = hierarchy
    seen = h.lookup(seen_w, str(cfg.seen_file), wnid_line_numbers(cfg.seen_file))
    pool = h.lookup(pool_w, str(cfg.pool_file), wnid_line_numbers(cfg.pool_file))

    counts: dict[str, int] | None = None
    if cfg.counts_file is not None:
        counts = read_image_counts(cfg.counts_file, cfg.counts_column)
    elif cfg.imagenet_root is not None:
        counts = count_imagenet_root(cfg.imagenet_root, progress=progress)
    if counts is not None:
        missing = [w for w in pool_w if w not in counts]
        if missing:
            src = cfg.counts_file or cfg.imagenet_root
            warnings.append(
                f"{len(missing)} pool concepts have no entry in {src} and count "
                f"as 0 images (e.g. {', '.join(missing[:3])})"
            )

    keep = np.ones(len(pool), dtype=bool)
    dropped_by = np.array([""] * len(pool), dtype=object)
    steps: list[Step] = [Step("pool", "the pool as read", True, len(pool), 0)]

    def apply(name: str, description: str, drop: np.ndarray | None) -> None:
        if name in cfg.skip or drop is None:
            steps.append(Step(name, description, False, int(keep.sum()), 0))
            return
        hit = keep & drop
        dropped_by[hit] = name
        keep[hit] = False
        steps.append(Step(name, description, True, int(keep.sum()), int(hit.sum())))

    seen_set = {int(s) for s in seen}
    apply("seen", "drop the seen concepts", np.isin(pool, seen))
    seen_anc = set().union(*(h.ancestors[s] for s in seen)) - seen_set
    apply("ancestors", "drop hypernyms (any depth) of seen concepts", np.isin(pool, list(seen_anc)))
    excl_desc = "drop the subtrees of " + (", ".join(cfg.exclude_subtrees) or "(none)")
    excl = np.zeros(len(pool), dtype=bool)
    if cfg.exclude_subtrees and "excluded" not in cfg.skip:
        roots = np.array([h.by_name(n) for n in cfg.exclude_subtrees])
        excl |= h.descendants_of(roots)[pool]
    if cfg.exclude_file is not None:
        excl_w = read_wnid_list(cfg.exclude_file)
        excl |= np.isin(np.array(pool_w), excl_w)
        excl_desc += f" and the {len(excl_w)} wnids of {cfg.exclude_file}"
    apply("excluded", excl_desc, excl)
    img = np.array([counts.get(w, 0) for w in pool_w]) if counts is not None else None
    if img is None and "min_images" not in cfg.skip:
        warnings.append(
            f"NO IMAGE COUNTS: the min_images filter (>= {cfg.min_images} images) was "
            "skipped, so concepts too small for the 732 train + 50 test protocol may be in "
            "the levels. Pass --counts FILE or --imagenet-root DIR to apply it."
        )
    apply(
        "min_images",
        f"keep concepts with >= {cfg.min_images} images",
        None if img is None else img < cfg.min_images,
    )
    pool_set = set(pool.tolist())
    inner = {a for p in pool for a in h.ancestors[p] if a != p} & pool_set
    apply(
        "leaf",
        "keep leaves of the pool hierarchy (no hyponym at any depth is in the pool)",
        np.isin(pool, list(inner)),
    )

    eligible = np.flatnonzero(keep)
    if len(eligible) == 0:
        raise CogError(
            f"no concept of {cfg.pool_file} is left after the filters "
            f"({_steps_line(steps)}); switch a filter off with --skip-filter"
        )
    needed = cfg.n_levels * cfg.level_size
    if len(eligible) < needed:
        raise CogError(
            f"only {len(eligible)} eligible concepts are left ({_steps_line(steps)})"
            f" but {cfg.n_levels} levels x {cfg.level_size} need {needed}; lower "
            "--level-size or --levels, or switch a filter off with --skip-filter"
        )

    ic = _load_ic(cfg, h, pool, counts)
    engine = LinEngine(h, ic)
    ms = engine.max_similarity(pool[eligible], seen, progress=progress)
    bad = ~np.isfinite(ms.similarity)
    if bad.any():
        raise CogError(
            f"Lin similarity is undefined for {int(bad.sum())} concepts (e.g. "
            f"{pool_w[eligible[np.argmax(bad)]]}): the IC gives them zero count; "
            "use --ic intrinsic or --ic-smoothing 1"
        )

    sim = np.full(len(pool), np.nan)
    sim[eligible] = ms.similarity
    nearest = np.full(len(pool), -1)
    nearest[eligible] = ms.nearest
    # Rank by decreasing similarity; ties by wnid so the order never depends on input order.
    order = sorted(range(len(eligible)), key=lambda k: (-ms.similarity[k], pool_w[eligible[k]]))
    ranked = eligible[order]
    rank = np.zeros(len(pool), dtype=np.int64)
    rank[ranked] = np.arange(1, len(ranked) + 1)
    level = np.zeros(len(pool), dtype=np.int64)
    cut, bins = _cut(ranked, cfg, warnings)
    for lv, members in enumerate(cut, start=1):
        level[members] = lv

    cand = pd.DataFrame(
        {
            "wnid": pool_w,
            "name": [h.lemmas[i] for i in pool],
            "synset": [h.names[i] for i in pool],
            "dropped_by": dropped_by,
            "similarity": sim,
            "rank": rank,
            "level": level,
            "nearest_seen_wnid": [h.wnid(n) if n >= 0 else "" for n in nearest],
            "nearest_seen_name": [h.lemmas[n] if n >= 0 else "" for n in nearest],
            "image_count": pd.array(img if img is not None else [None] * len(pool), dtype="Int64"),
        }
    )
    levels = [
        cand.loc[cand["level"] == lv].sort_values("rank")["wnid"].tolist()
        for lv in range(1, cfg.n_levels + 1)
    ]
    used = sorted(set().union(*(h.ancestors[i] for i in np.concatenate([seen, pool[eligible]]))))
    inputs = {
        k: rec
        for k, rec in {
            "seen_file": _file_record(cfg.seen_file),
            "pool_file": _file_record(cfg.pool_file),
            "counts_file": _file_record(cfg.counts_file),
            "ic_file": _file_record(cfg.ic_file),
            "exclude_file": _file_record(cfg.exclude_file),
        }.items()
        if rec is not None
    }
    if cfg.compare_file is not None:
        inputs["compare_file"] = _file_record(cfg.compare_file)
    if bins is not None:
        bins["max S"] = [float(sim[ranked[a - 1]]) for a in bins["first rank"]]
        bins["min S"] = [float(sim[ranked[b - 1]]) for b in bins["last rank"]]
    if cfg.imagenet_root is not None:
        inputs["imagenet_root"] = {
            "path": str(Path(cfg.imagenet_root).resolve()),
            "synsets": len(counts or {}),
            "images": int(sum((counts or {}).values())),
        }
    result = LevelsResult(
        cfg,
        levels,
        cand,
        steps,
        ic,
        ic.table(h, np.array(used)),
        counts,
        warnings,
        inputs,
        h.source,
        bins=bins,
    )
    if official is not None:
        result.comparison = compare_with_official(
            result, official, LinEngine(h, ic), seen, str(cfg.compare_file)
        )
    result.seconds = time.perf_counter() - t0
    return result


def _steps_line(steps: list[Step]) -> str:
    return ", ".join(f"{s.name}: {s.remaining}" for s in steps)


def bin_edges(n: int, n_bins: int) -> list[int]:
    """Edges of `n_bins` equal rank bins over n items: k*n/n_bins rounded half up."""
    return [(2 * k * n + n_bins) // (2 * n_bins) for k in range(n_bins + 1)]


def _cut(
    ranked: np.ndarray, cfg: LevelsConfig, warnings: list[str]
) -> tuple[list[np.ndarray], pd.DataFrame | None]:
    """Cut the ranked eligible concepts into levels (`bins` or `blocks`, see protocol.md).

    `bins`: the ranking is split into --levels equal rank bins (BINS_ROUNDING) and
    --level-size concepts are drawn from each, without replacement, by a generator seeded
    with --seed; every bin holds at least level-size since N >= levels x level-size.
    """
    n, size = cfg.n_levels, cfg.level_size
    if cfg.cut == "blocks":
        spare = len(ranked) - n * size
        if spare:
            warnings.append(
                f"blocks cut: the {spare} least similar eligible concepts are in no level"
            )
        return [ranked[k * size : (k + 1) * size] for k in range(n)], None
    rng = np.random.default_rng(cfg.seed)
    edges = bin_edges(len(ranked), n)
    out, rows = [], []
    for k in range(n):
        b = ranked[edges[k] : edges[k + 1]]
        out.append(b[np.sort(rng.choice(len(b), size=size, replace=False))])
        rows.append(
            {
                "bin": f"L{k + 1}",
                "first rank": edges[k] + 1,
                "last rank": edges[k + 1],
                "size": len(b),
                "drawn": size,
            }
        )
    return out, pd.DataFrame(rows)


# ---------------------------------------------------------------- reading level files


def read_levels(path: str | Path) -> list[list[str]]:
    """Levels as a list of wnid lists (index 0 = L1) from the authors' pickle, our
    levels.csv, or a folder holding either."""
    path = Path(path)
    if path.is_dir():
        for name in (MAPPING_FILE, "levels.csv"):
            if (path / name).is_file():
                return read_levels(path / name)
        raise CogError(f"{path}: holds neither {MAPPING_FILE} nor levels.csv")
    if not path.is_file():
        raise CogError(f"{path}: no such levels file")
    if path.suffix == ".csv":
        df = pd.read_csv(path, dtype={"wnid": str})
        if not {"wnid", "level"} <= set(df.columns):
            raise CogError(f"{path}: a levels CSV needs 'wnid' and 'level' columns")
        n = int(df["level"].max())
        levels = [df.loc[df["level"] == k, "wnid"].tolist() for k in range(1, n + 1)]
    else:
        levels = safe_load(path)  # never pickle.load: a downloaded file must not run code
        if not (
            isinstance(levels, (list, tuple))
            and all(isinstance(lv, (list, tuple)) for lv in levels)
        ):
            raise CogError(
                f"{path}: expected a pickled list of levels, each a list of wnids "
                f"(the authors' {MAPPING_FILE} format)"
            )
        levels = [[str(w) for w in lv] for lv in levels]
    seen: dict[str, int] = {}
    for k, lv in enumerate(levels, start=1):
        if not lv:
            raise CogError(f"{path}: level {k} is empty")
        for w in lv:
            if w in seen:
                raise CogError(f"{path}: {w} is in level {seen[w]} and level {k}")
            seen[w] = k
    return levels


def compare_levels(rebuilt: list[list[str]], official: list[list[str]]) -> pd.DataFrame:
    """Rows: rebuilt levels; columns: how many of their concepts sit in each official level
    (and in none), plus the overlap with the same-numbered official level."""
    where = {w: k for k, lv in enumerate(official, start=1) for w in lv}
    rows = []
    for k, lv in enumerate(rebuilt, start=1):
        row = {"level": f"L{k}", "size": len(lv)}
        for j in range(1, len(official) + 1):
            row[f"official L{j}"] = sum(where.get(w) == j for w in lv)
        row["in no official level"] = sum(w not in where for w in lv)
        same = row.get(f"official L{k}", 0)
        row["overlap"] = same
        row["overlap %"] = round(100.0 * same / max(len(lv), 1), 1)
        rows.append(row)
    return pd.DataFrame(rows)


def compare_with_official(
    result: LevelsResult,
    official: list[list[str]],
    engine: LinEngine,
    seen: np.ndarray,
    source: str = "official levels",
) -> LevelsComparison:
    """Per official level and overall: membership (in any of cog's levels), level agreement
    (in cog's same level), agreement of cog's ranking given the official membership (the
    official concepts sorted by cog's S and cut into blocks of the official sizes), and the
    rank and similarity range the level occupies in cog's ranking.

    Official concepts the filters dropped are scored too (same IC, same seen set), so the
    given-membership agreement measures the ranking alone; they have no rank.
    """
    wnids = [w for lv in official for w in lv]
    nodes = engine.h.lookup(wnids, source)
    cand = result.candidates.set_index("wnid")
    sim = cand["similarity"].reindex(wnids).to_numpy(dtype=float, na_value=np.nan).copy()
    todo = np.isnan(sim)
    if todo.any():
        sim[todo] = engine.max_similarity(nodes[todo], seen).similarity
    rank = cand["rank"].reindex(wnids).fillna(0).to_numpy(dtype=np.int64)
    mine = cand["level"].reindex(wnids).fillna(0).to_numpy(dtype=np.int64)
    theirs = np.repeat(np.arange(1, len(official) + 1), [len(lv) for lv in official])
    key = np.where(np.isfinite(sim), -sim, np.inf)
    given = np.empty(len(wnids), dtype=np.int64)
    given[sorted(range(len(wnids)), key=lambda k: (key[k], wnids[k]))] = theirs

    def row(name: str, sel: np.ndarray, same: np.ndarray) -> dict:
        n, ranked = int(sel.sum()), rank[sel][rank[sel] > 0]
        s = sim[sel]
        counts = {
            "membership": int((mine[sel] > 0).sum()),
            "level agreement": int(same[sel].sum()),
            "given membership": int((given[sel] == theirs[sel]).sum()),
        }
        out: dict = {"level": name, "official": n}
        for k, v in counts.items():
            out[k] = v
            out[f"{k} %"] = round(100.0 * v / max(n, 1), 1)
        out["rank min"] = int(ranked.min()) if len(ranked) else None
        out["rank max"] = int(ranked.max()) if len(ranked) else None
        out["unranked"] = n - len(ranked)
        out["max S"] = round(float(np.nanmax(s)), 4) if n else None
        out["min S"] = round(float(np.nanmin(s)), 4) if n else None
        return out

    same = mine == theirs
    rows = [row(f"L{k}", theirs == k, same) for k in range(1, len(official) + 1)]
    rows.append(row("all", np.ones(len(wnids), dtype=bool), same))
    return LevelsComparison(pd.DataFrame(rows), compare_levels(result.levels, official))
