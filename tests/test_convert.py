"""Converters on tiny synthetic checkpoints with each release's original key layout.

The end-to-end round trip through the real architectures (strict load) is in test_zoo.py;
here each converter's layout logic is pinned down on a handful of tensors.
"""

from __future__ import annotations

import sys
import types

import pytest
import torch

from cog import CogError
from cog.zoo.convert import ARCH_CONVERTERS, CONVERTERS, convert, get_converter, known_names

BODY = {
    "conv1.weight": torch.zeros(4, 3, 7, 7),
    "bn1.running_mean": torch.zeros(4),
    "layer1.0.conv1.weight": torch.ones(4, 4, 1, 1),
}
FC = {"fc.weight": torch.zeros(10, 4), "fc.bias": torch.zeros(10)}


def pre(prefix: str, sd: dict) -> dict:
    return {prefix + k: v for k, v in sd.items()}


def same(a: dict, b: dict) -> bool:
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


# (converter, original checkpoint, expected state dict)
LAYOUTS = {
    "plain": ({**BODY, **FC}, {**BODY, **FC}),
    "moco": (
        {
            "epoch": 800,
            "arch": "resnet50",
            "state_dict": {
                **pre("module.encoder_q.", BODY),
                "module.encoder_q.fc.0.weight": torch.zeros(8, 4),
                "module.encoder_q.fc.2.weight": torch.zeros(2, 8),
                **pre("module.encoder_k.", BODY),
                "module.queue": torch.zeros(2, 16),
                "module.queue_ptr": torch.zeros(1),
            },
        },
        BODY,
    ),
    "infomin": (
        {
            "model": {**pre("module.encoder.", BODY), "module.head.fc.weight": torch.zeros(2, 4)},
            "epoch": 800,
        },
        BODY,
    ),
    "swav": (
        {
            **pre("module.", BODY),
            "module.projection_head.0.weight": torch.zeros(8, 4),
            "module.prototypes.weight": torch.zeros(30, 8),
        },
        BODY,
    ),
    "obow": ({"network": {**BODY, "fc.weight": torch.zeros(8192, 4)}, "epoch": 200}, BODY),
    "compress": (
        {"model": {**pre("module.", BODY), "module.fc.0.weight": torch.zeros(8192, 4)}},
        BODY,
    ),
    "cutmix": ({"state_dict": pre("module.", {**BODY, **FC}), "best_err1": 21.4}, {**BODY, **FC}),
    "relabel": (pre("module.", {**BODY, **FC}), {**BODY, **FC}),
    "mealv2": (pre("module.", {**BODY, **FC}), {**BODY, **FC}),
    "advrobust": (
        {
            "model": {
                **pre("module.model.", {**BODY, **FC}),
                **pre("module.attacker.model.", {**BODY, **FC}),
                "module.normalizer.new_mean": torch.zeros(3, 1, 1),
                "module.attacker.normalize.new_std": torch.zeros(3, 1, 1),
            },
            "epoch": 90,
        },
        {**BODY, **FC},
    ),
    "mopro": (
        {
            "state_dict": {
                **pre("module.encoder_q.", BODY),
                "module.encoder_q.fc.weight": torch.zeros(128, 4),
                "module.encoder_q.classifier.weight": torch.ones(10, 4),
                "module.encoder_q.classifier.bias": torch.ones(10),
                **pre("module.encoder_k.", BODY),
                "module.prototypes": torch.zeros(10, 128),
            }
        },
        {**BODY, "fc.weight": torch.ones(10, 4), "fc.bias": torch.ones(10)},
    ),
    "deit": (
        {"model": {**BODY, "head.weight": torch.zeros(10, 4)}, "epoch": 300},
        {**BODY, "head.weight": torch.zeros(10, 4)},
    ),
    "mocov3_vit": (
        {
            "state_dict": {
                **pre("module.base_encoder.", BODY),
                "module.base_encoder.head.0.weight": torch.zeros(8, 4),
                **pre("module.momentum_encoder.", BODY),
                "module.predictor.0.weight": torch.zeros(8, 8),
            }
        },
        BODY,
    ),
    "ibot": (
        {
            "state_dict": {
                **pre("backbone.", BODY),
                "head.mlp.0.weight": torch.zeros(8, 4),
                "masked_embed": torch.zeros(4),
            }
        },
        BODY,
    ),
    "cog_mochi": (
        {
            "state_dict": {
                **pre("module.encoder_q.", {**BODY, "fc.0.weight": torch.zeros(2, 4)}),
                **pre("module.encoder_k.", BODY),
            }
        },
        BODY,
    ),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_converter_reads_its_original_layout(name):
    ckpt, expected = LAYOUTS[name]
    assert same(convert(name, ckpt), expected)


@pytest.mark.parametrize(
    "name, bad",
    [
        ("moco", {"model": pre("module.encoder_q.", BODY)}),  # wrong nesting key
        ("moco", {"state_dict": pre("module.encoder.", BODY)}),  # InfoMin prefix
        ("infomin", {"model": pre("module.encoder_q.", BODY)}),
        ("obow", BODY),
        ("advrobust", {"model": pre("module.", BODY)}),
        ("mealv2", {**pre("module.", BODY), "fc.weight": torch.zeros(1)}),
        ("mocov3_vit", {"state_dict": pre("module.encoder_q.", BODY)}),
        ("plain", {"state_dict": BODY}),  # nested where a flat dict is expected
    ],
)
def test_wrong_layout_fails_loudly(name, bad):
    with pytest.raises(CogError) as e:
        convert(name, bad)
    msg = str(e.value)
    assert "layout" in msg or "module." in msg


def test_moco_and_mochi_share_the_layout_and_aliases_are_registered():
    assert CONVERTERS["moco"] is CONVERTERS["mochi"]
    assert CONVERTERS["cutmix"] is CONVERTERS["mixup"] is CONVERTERS["manifold_mixup"]
    assert CONVERTERS["deit"] is CONVERTERS["mae"]


def test_tv_vgg_reshapes_the_classifier_into_timm_convs():
    ckpt = {
        "features.0.weight": torch.zeros(64, 3, 3, 3),
        "classifier.0.weight": torch.arange(4096 * 512 * 49, dtype=torch.float32).reshape(
            4096, 512 * 49
        ),
        "classifier.0.bias": torch.zeros(4096),
        "classifier.3.weight": torch.zeros(4096, 4096),
        "classifier.6.weight": torch.zeros(1000, 4096),
    }
    out = convert("tv_vgg", ckpt)
    assert out["pre_logits.fc1.weight"].shape == (4096, 512, 7, 7)
    assert torch.equal(out["pre_logits.fc1.weight"].flatten(1), ckpt["classifier.0.weight"])
    assert out["pre_logits.fc2.weight"].shape == (4096, 4096, 1, 1)
    assert set(out) == {
        "features.0.weight",
        "pre_logits.fc1.weight",
        "pre_logits.fc1.bias",
        "pre_logits.fc2.weight",
        "head.fc.weight",
    }


def test_non_tensor_entries_are_rejected():
    with pytest.raises(CogError, match="non-tensor"):
        convert("plain", {**BODY, "epoch": 3})
    with pytest.raises(CogError, match="dict-like"):
        convert("plain", [1, 2])


def test_unknown_converter_suggests_close_names():
    with pytest.raises(CogError, match="did you mean moco"):
        get_converter("mocco")


def test_arch_converters_are_merged_from_cog_archs(monkeypatch):
    fake = types.ModuleType("cog.zoo.archs")
    fake.CONVERTERS = {"nat_m4": lambda ck: {"x": torch.zeros(1)}}
    fake.ARCHS = {}
    monkeypatch.setitem(sys.modules, "cog.zoo.archs", fake)
    assert set(convert("nat_m4", {"anything": torch.zeros(2)})) == {"x"}
    assert set(ARCH_CONVERTERS) <= known_names()


def test_reserved_arch_converter_without_cog_archs(monkeypatch):
    monkeypatch.setitem(sys.modules, "cog.zoo.archs", None)  # import fails
    assert "nat_m4" in known_names()
    with pytest.raises(CogError, match=r"cog\.zoo\.archs"):
        get_converter("nat_m4")
