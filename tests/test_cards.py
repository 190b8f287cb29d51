"""Shipped cards state only what differs from their family and the schema's defaults, and load
to exactly the cards they were before families existed (tests/fixtures/shipped_cards.json,
written from the full cards by the code before the change)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from cog import CogError, zoo

SNAPSHOT = json.loads((Path(__file__).parent / "fixtures" / "shipped_cards.json").read_text())
CARD_FILES = sorted(p for p in zoo.SHIPPED_DIR.glob("*.yaml") if not p.name.startswith("_"))
SCHEMA_DEFAULTS = {
    "converter": "plain",
    "precision": "float32",
    "dropped_keys": [],
    "feature": {"pool": "head"},
    "arch": {"kwargs": {}},
    "preprocess": zoo.Preprocess().to_dict(),
}


@pytest.mark.parametrize("name", sorted(SNAPSHOT))
def test_card_loads_to_the_same_card_as_before_families(name):
    card = zoo.get_card(name)
    assert card.to_dict() == SNAPSHOT[name]


def _repeated(card: dict, ref: dict, where: str = "") -> list[str]:
    out = []
    for k, v in card.items():
        if k not in ref:
            continue
        if isinstance(v, dict) and isinstance(ref[k], dict):
            out += _repeated(v, ref[k], f"{where}{k}.")
        elif v == ref[k]:
            out.append(f"{where}{k}")
    return out


@pytest.mark.parametrize("path", CARD_FILES, ids=lambda p: p.stem)
def test_card_file_states_only_what_differs(path):
    raw = yaml.safe_load(path.read_text())
    ref = zoo._merge(SCHEMA_DEFAULTS, zoo.families().get(raw.get("family"), {}))
    repeated = _repeated(raw, ref)
    assert not repeated, f"{path.name} repeats its family/schema defaults: {repeated}; drop them"


def test_family_fills_fields_and_the_card_overrides_them():
    base = {"name": "x", "group": "local", "title": "t", "weights": [{"path": "/w.pth"}]}
    card = zoo.ModelCard.from_dict({**base, "family": "resnet50", "converter": "moco"})
    assert (card.arch.source, card.arch.name, card.feature_dim) == ("timm", "resnet50", 2048)
    assert card.dropped_keys == ("fc.weight", "fc.bias") and card.converter == "moco"
    wider = zoo.ModelCard.from_dict(
        {**base, "family": "resnet50", "feature": {"dim": 4096}, "dropped_keys": []}
    )
    assert wider.feature_dim == 4096 and wider.dropped_keys == ()
    assert wider.feature_layer == card.feature_layer  # merged field by field
    vit = zoo.ModelCard.from_dict(
        {**base, "family": "vit_cls", "arch": {"source": "timm", "name": "vit_tiny_patch16_224"}}
        | {"feature": {"dim": 192}}
    )
    assert vit.feature_pool == "cls" and vit.preprocess == zoo.Preprocess()


def test_unknown_family_is_named():
    with pytest.raises(CogError, match=r"x\.yaml: unknown family 'resnet'; known: \["):
        zoo.ModelCard.from_dict({"name": "x", "group": "local", "family": "resnet"}, "x.yaml")


def test_families_file_is_not_a_card():
    assert (zoo.SHIPPED_DIR / zoo.FAMILIES_FILE).is_file()
    assert all(c.source_file != str(zoo.SHIPPED_DIR / zoo.FAMILIES_FILE) for c in zoo._shipped())
