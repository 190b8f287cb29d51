"""Where cards come from: the shipped cards, the user's cards, lookups by name.

Shipped cards are package data in `cog/zoo/cards/`; user cards (MoCHi runs, TLDR projections)
live in `$COG_HOME/models/`. A broken user card is left out with a warning rather than
making every model unusable.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from cog import CogError
from cog.io import atomic_write, cog_home
from cog.zoo.schema import GROUPS, SHIPPED_DIR, ModelCard


def user_dir() -> Path:
    """Where user cards live: `$COG_HOME/models`."""
    return cog_home() / "models"


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
