"""The two option bundles that travel from the command line to the extractor.

`DataRoots` says where a benchmark dataset's images and lists are; `ExtractOptions` says how
features are extracted. cog-extract, cog-eval and cog-tldr build them once from their
options (cog.cli), and `EvalConfig` -> `ensure_features` -> `extract` pass them on whole,
so a new setting is declared here and in the CLI, not threaded through every signature.
This module imports no torch, so the CLIs can use it before --help answers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from cog import CogError

DTYPES = ("float16", "float32")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DECODES = ("auto", "cpu", "gpu")


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value).expanduser()


@dataclass(frozen=True)
class DataRoots:
    """Where the benchmark datasets are. None: not given (in1k/cog_lN then need the root;
    levels and splits are found as cog.concepts documents: built ones, else shipped ones)."""

    in1k_root: Path | None = None  # holds train/<wnid>/ and val/<wnid>/
    imagenet_root: Path | None = None  # ImageNet-21K: one <wnid>/ folder or <wnid>.tar each
    levels: Path | None = None  # levels file or folder of the cog_lN datasets
    splits: Path | None = None  # per-concept train/test lists

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, _path(getattr(self, f.name)))

    def check(self) -> None:
        """Refuse paths that do not exist, naming the option, before any work starts."""
        for opt, p in (("--in1k-root", self.in1k_root), ("--imagenet-root", self.imagenet_root)):
            if p is not None and not p.is_dir():
                raise CogError(f"{opt} {p}: no such folder; pass the dataset's root folder")
        for opt, p in (("--levels", self.levels), ("--splits", self.splits)):
            if p is not None and not p.exists():
                raise CogError(f"{opt} {p}: no such file")

    def to_dict(self) -> dict[str, str | None]:
        return {f.name: _str(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class ExtractOptions:
    """How features are extracted. `exact`, `jpeg_draft`, `decode` and `dtype` are part of
    a cache's key (caches made otherwise are never reused); `precision` is checked when
    asked for; the rest only change speed and output. `device` is also where cog-eval's
    probes run."""

    exact: bool = False  # the card's torchvision transform itself (default: the fast path)
    jpeg_draft: bool = False  # reduced-scale JPEG decoding: opt-in, not the protocol's pixels
    decode: str = "auto"  # auto | cpu | gpu: where JPEGs are decoded and resized
    dtype: str = "float16"  # stored feature type
    precision: str = "auto"  # auto (bf16/fp16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    device: str = "auto"  # auto (CUDA when available) | cpu | cuda | cuda:N
    batch_size: int | None = None  # None: 256 on CUDA (halved on OOM), 32 on CPU
    workers: int | None = None  # decoding processes; None: from the cores, 0: in-process
    progress: bool = True  # tqdm bars and the closing summary

    def __post_init__(self) -> None:
        for name, allowed in (
            ("decode", DECODES),
            ("dtype", DTYPES),
            ("precision", PRECISIONS),
        ):
            value = getattr(self, name)
            if value not in allowed:
                raise CogError(f"--{name} {value!r}: choose one of {', '.join(allowed)}")
        if self.exact and self.jpeg_draft:
            raise CogError(
                "--exact and --jpeg-draft exclude each other (exact decodes full size); pick one"
            )
        if self.decode == "gpu" and self.mode != "fast":
            raise CogError(
                f"--decode gpu needs the fast mode (not {self.mode}); drop --exact/--jpeg-draft"
            )
        if self.workers is not None and self.workers < 0:
            raise CogError(f"--workers {self.workers}: give 0 or more decoding processes")
        if self.batch_size is not None and self.batch_size < 1:
            raise CogError(f"--batch-size {self.batch_size}: give a positive batch size")

    @property
    def mode(self) -> str:
        """The preprocessing mode a cache records: fast, exact or fast+jpeg-draft."""
        return "exact" if self.exact else ("fast+jpeg-draft" if self.jpeg_draft else "fast")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class FeatureSource:
    """Everything that decides a (model, dataset, split) cache besides those three: the
    data, the weights, how to extract, where caches live. What `ensure_features`,
    `compress_model` and `study` take, and `EvalConfig.source()` gives."""

    roots: DataRoots = field(default_factory=DataRoots)
    options: ExtractOptions = field(default_factory=ExtractOptions)
    cache_dir: Path | None = None  # None: $COG_HOME/features
    checkpoint: Path | None = None  # a local weights file instead of the card's sources
    random_init: bool = False  # random weights: smoke runs only, cached apart

    def __post_init__(self) -> None:
        object.__setattr__(self, "cache_dir", _path(self.cache_dir))
        object.__setattr__(self, "checkpoint", _path(self.checkpoint))


ROOT_FIELDS = tuple(f.name for f in fields(DataRoots))
OPTION_FIELDS = tuple(f.name for f in fields(ExtractOptions))
SOURCE_FIELDS = ("cache_dir", "checkpoint", "random_init")


def updated(
    source: FeatureSource | None, settings: dict[str, Any], where: str
) -> FeatureSource:
    """`source` (the defaults when None) with keyword `settings` applied: the short form
    `ensure_features(..., in1k_root=..., exact=True)` of library calls. Settings are field
    names of DataRoots, ExtractOptions and FeatureSource; others are a TypeError, as for any
    Python call."""
    _check_names(
        settings,
        {"DataRoots": ROOT_FIELDS, "ExtractOptions": OPTION_FIELDS, "FeatureSource": SOURCE_FIELDS},
        where,
    )
    source = source or FeatureSource()
    return dataclasses.replace(
        source,
        roots=dataclasses.replace(source.roots, **_pick(settings, ROOT_FIELDS)),
        options=dataclasses.replace(source.options, **_pick(settings, OPTION_FIELDS)),
        **_pick(settings, SOURCE_FIELDS),
    )


def updated_options(options: ExtractOptions | None, settings: dict[str, Any]) -> ExtractOptions:
    """`options` with keyword `settings` (ExtractOptions field names) applied: `extract`'s
    short form."""
    _check_names(settings, {"ExtractOptions": OPTION_FIELDS}, "extract")
    return dataclasses.replace(options or ExtractOptions(), **settings)


def _check_names(settings: dict[str, Any], groups: dict[str, tuple[str, ...]], where: str) -> None:
    unknown = sorted(set(settings) - {n for names in groups.values() for n in names})
    if unknown:
        listed = "; ".join(f"{cls}: {', '.join(names)}" for cls, names in groups.items())
        raise TypeError(
            f"{where}() got unexpected keyword argument(s) {', '.join(unknown)} "
            f"(settings are the fields of {listed})"
        )


def _pick(settings: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k in names}


def _str(value: object) -> Any:
    return str(value) if isinstance(value, Path) else value
