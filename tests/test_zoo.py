"""Model zoo: cards, architectures, strict loading, weight cache, composite and user cards.

Nothing is downloaded: checkpoints are synthetic, written in each release's original key
layout from the architecture's own state dict. Architectures over ~50M parameters or with
inputs of 299 px and more (VGG19, ResNet-152, ViT-B/DeiT-B, DeiT-B-384, Inception-v3,
EfficientNet-B4) are built too (about 30 s more on a 2-core machine); COG_TEST_LARGE=0 skips
them, and converter round trips then run on the same-family small model (same key layout).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from cog import CogError, zoo
from cog.features.synthetic import tiny_resnet_card
from cog.zoo.convert import convert

LARGE = os.environ.get("COG_TEST_LARGE", "1") != "0"
LARGE_ARCHS = {  # > 50M parameters or inputs of 299 px and more
    "inception_v3",
    "pycls_effnet_b4",
    "vgg19_bn",
    "resnet152",
    "deit_base_distilled_patch16_384",
    "vit_base_patch16_224",
    "deit_base_patch16_224",
}
# same key layout, smaller model: used for converter round trips when large ones are off
STAND_IN = {
    "resnet152": "resnet50",
    "vit_base_patch16_224": "vit_small_patch16_224",
    "deit_base_patch16_224": "deit_small_patch16_224",
    "deit_base_distilled_patch16_384": "deit_small_distilled_patch16_224",
}
PAPER_MODELS = (
    "sup_resnet50 sup_resnet152 sup_inception-v3 sup_vgg19 deit_small deit_small_distilled "
    "deit_base_distilled_384 nat_m4 efficientnet_b1 efficientnet_b4 t2tvit_t14 "
    "simclrv2_resnet50 byol_resnet50 mocov2_resnet50 mochi_resnet50 infomin_resnet50 "
    "swav_resnet50 dino_resnet50 obow_resnet50 barlow_resnet50 compress_resnet50 mixup_resnet50 "
    "manifold-mixup_resnet50 cutmix_resnet50 relabel_resnet50 advrobust_resnet50 "
    "mealv2_resnet50 mopro_resnet50 ssup_resnet50 swsup_resnet50 clip_resnet50"
).split()
ALL = sorted(c.name for c in zoo._shipped())  # shipped cards only, not ~/.cache/cog


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """COG_HOME, torch hub and HF caches in tmp; no network."""
    monkeypatch.setenv("COG_HOME", str(tmp_path / "cog"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("COG_OFFLINE", "1")
    import huggingface_hub.constants as hfc

    monkeypatch.setattr(hfc, "HF_HUB_CACHE", str(tmp_path / "hf"))
    return tmp_path


def has_archs() -> bool:
    try:
        import cog.zoo.archs  # noqa: F401
    except ImportError:
        return False
    return True


def need_arch(card: zoo.ModelCard) -> None:
    if card.arch.source == "cog" and not has_archs():
        pytest.skip(f"{card.name}: cog.zoo.archs ({card.arch.name}) is not importable yet")


_NETS: dict[tuple, torch.nn.Module] = {}
_FEATURES: dict[tuple, torch.Tensor] = {}
_FRESH: dict[tuple, dict[str, torch.Tensor]] = {}


def arch_key(card: zoo.ModelCard) -> tuple:
    return (card.arch.source, card.arch.name, repr(sorted(card.arch.kwargs.items())))


def built(card: zoo.ModelCard) -> torch.nn.Module:
    """Session cache: one build per distinct architecture (many cards share ResNet-50)."""
    key = arch_key(card)
    if key not in _NETS:
        torch.manual_seed(0)
        _NETS[key] = zoo.build_arch(card).eval()
    return _NETS[key]


def features(card: zoo.ModelCard) -> torch.Tensor:
    """Backbone output for 2 random images at the card's input size (cached per arch)."""
    key = (*arch_key(card), card.feature_pool, card.preprocess.crop)
    if key not in _FEATURES:
        x = torch.randn(2, 3, card.preprocess.crop, card.preprocess.crop)
        with torch.no_grad():
            _FEATURES[key] = zoo.Backbone(built(card), card, "random-init")(x)
    return _FEATURES[key]


def small(card: zoo.ModelCard) -> zoo.ModelCard:
    if LARGE or card.arch.name not in STAND_IN:
        return card
    return dataclasses.replace(
        card, arch=dataclasses.replace(card.arch, name=STAND_IN[card.arch.name])
    )


# ----------------------------------------------------------------------------- cards


def test_zoo_has_every_paper_model_and_enough_modern_ones():
    assert len(ALL) >= 43
    for name in PAPER_MODELS:
        card = zoo.get_card(name)  # the authors' --model names resolve
        assert card.paper_model, name
    modern = [n for n in ALL if not zoo.get_card(n).paper_model]
    assert len(modern) >= 12
    assert {zoo.get_card(n).group for n in PAPER_MODELS} == {"sup", "a", "s", "r", "d"}


@pytest.mark.parametrize("name", ALL)
def test_card_validates_and_round_trips(name):
    card = zoo.get_card(name)
    again = zoo.ModelCard.from_dict(card.to_dict(), "<round trip>")
    assert dataclasses.replace(again, source_file=card.source_file) == card
    assert card.weights and card.feature_dim > 0 and card.title and card.paper
    assert card.license and (card.origin or card.paper_model)
    for w in card.weights:
        if w.kind == "url":
            assert w.location.startswith("https://")
        if w.kind == "manual":
            assert "http" in w.instructions
    if any(w.kind == "hub" for w in card.weights):
        import timm

        hub = next(w.location for w in card.weights if w.kind == "hub")
        assert hub.removeprefix("timm/") in timm.list_pretrained(), hub


def test_modern_models_use_in1k_only_weights():
    for name in ALL:
        for w in zoo.get_card(name).weights:
            if w.kind == "hub":
                tag = w.location.rsplit(".", 1)[-1]
                assert "21k" not in tag and "12k" not in tag and "lvd" not in tag, (name, tag)


SPEC_PREPROCESS = {  # protocol.md section 3: (crop, mean, std, channel order)
    "sup_inception-v3": (299, zoo.IMAGENET_MEAN, zoo.IMAGENET_STD, "RGB"),
    "efficientnet_b1": (240, zoo.IMAGENET_MEAN, zoo.IMAGENET_STD, "BGR"),
    "efficientnet_b4": (380, zoo.IMAGENET_MEAN, zoo.IMAGENET_STD, "BGR"),
    "deit_base_distilled_384": (384, zoo.IMAGENET_MEAN, zoo.IMAGENET_STD, "RGB"),
    "clip_resnet50": (
        224,
        (0.48145466, 0.4578275, 0.40821073),
        (0.26862954, 0.26130258, 0.27577711),
        "RGB",
    ),
    "simclrv2_resnet50": (224, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), "RGB"),
}


@pytest.mark.parametrize("name", PAPER_MODELS)
def test_paper_preprocessing_matches_the_protocol(name):
    p = zoo.get_card(name).preprocess
    crop, mean, std, order = SPEC_PREPROCESS.get(
        name, (224, zoo.IMAGENET_MEAN, zoo.IMAGENET_STD, "RGB")
    )
    assert (p.resize, p.crop, p.interpolation) == (crop, crop, "bicubic")
    assert (p.mean, p.std, p.channel_order) == (mean, std, order)


def test_feature_layers_follow_the_spec():
    assert zoo.get_card("sup_vgg19").feature_dim == 4096
    assert "after ReLU" in zoo.get_card("sup_vgg19").feature_layer
    assert zoo.get_card("sup_inception-v3").feature_dim == 2048
    for n in ("deit_small", "deit_small_distilled", "deit_base_distilled_384"):
        assert zoo.get_card(n).feature_pool == "cls"
    assert zoo.get_card("clip_resnet50").precision == "float16"


def test_transform_resizes_crops_normalizes_and_flips():
    img = Image.new("RGB", (300, 200), (255, 0, 0))
    x = zoo.get_card("efficientnet_b1").preprocess.transform()(img)
    assert x.shape == (3, 240, 240)
    red = (1 - 0.485) / 0.229
    assert torch.allclose(x[2], torch.full((240, 240), red), atol=1e-5)  # BGR: red last
    assert torch.allclose(x[0], torch.full((240, 240), -0.406 / 0.225), atol=1e-5)
    raw = zoo.get_card("simclrv2_resnet50").preprocess.transform()(img.convert("L"))
    assert raw.shape == (3, 224, 224) and raw.min() >= 0 and raw.max() <= 1  # gray -> RGB


def test_get_card_aliases_case_and_hyphens():
    assert zoo.get_card("D-CLIP").name == "clip_resnet50"
    assert zoo.get_card("manifold_mixup_resnet50").name == "manifold-mixup_resnet50"
    assert zoo.get_card("sup_inception_v3").name == "sup_inception-v3"
    with pytest.raises(CogError, match="did you mean mocov2_resnet50"):
        zoo.get_card("mocov2_resnet5")
    with pytest.raises(CogError, match="unknown group"):
        zoo.list_models("x")
    assert set(zoo.list_models("sup")) == {"sup_resnet50"}


@pytest.mark.parametrize(
    "patch, msg",
    [
        ({"group": "z"}, "group"),
        ({"converter": "nope"}, "unknown converter"),
        ({"feature": {"dim": 0}}, "feature.dim"),
        ({"preprocess": {"resize": 200, "crop": 224}}, "larger than resize"),
        ({"preprocess": {"mean": [0.5, 0.5]}}, "3 numbers"),
        ({"weights": [{"url": "https://x/y.pth", "sha256": "abc"}]}, "64 lowercase hex"),
        ({"weights": [{"manual": "get it"}]}, "filename"),
        ({"typo_field": 1}, "unknown field"),
        ({"converter": "my.py:convert"}, "converter file .*my.py not found"),
        ({"fingerprint": {"input": "cog-canonical-v1", "images": []}}, "fingerprint: images"),
        ({"fingerprint": {"input": "other"}}, "fingerprint: input 'other'"),
        ({"weights": [{"package": "w", "filename": "a/b.pth"}]}, "needs `filename`.*sha256"),
    ],
)
def test_invalid_cards_are_rejected(patch, msg):
    d = {**zoo.get_card("sup_resnet50").to_dict(), **patch}
    with pytest.raises(CogError, match=msg):
        zoo.ModelCard.from_dict(d, "bad.yaml")


# ----------------------------------------------------------------------------- architectures


@pytest.mark.parametrize("name", ALL)
def test_architecture_builds_and_gives_documented_features(name):
    card = zoo.get_card(name)
    need_arch(card)
    if card.arch.name in LARGE_ARCHS and not LARGE:
        pytest.skip(f"{card.arch.name}: large, COG_TEST_LARGE=0 skips it")
    f = features(card)
    assert f.shape == (2, card.feature_dim) and f.dtype == torch.float32
    assert torch.isfinite(f).all()


def test_cog_arch_cards_agree_with_cog_archs():
    if not has_archs():
        pytest.skip("cog.zoo.archs is not importable yet")
    import cog.zoo.archs as archs

    for name in ALL:
        card = zoo.get_card(name)
        if card.arch.source == "cog":
            assert card.feature_dim == archs.FEATURE_DIMS[card.arch.name], name
            assert card.preprocess.crop == archs.INPUT_SIZES[card.arch.name], name
            assert card.converter in archs.CONVERTERS, name


def test_distilled_deit_feature_is_the_cls_token_not_the_average():
    card = zoo.get_card("deit_small_distilled")
    net = built(card)
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        tokens = net.forward_features(x)
        f = zoo.Backbone(net, card, "random-init")(x)
    assert torch.equal(f, tokens[:, 0])
    assert not torch.allclose(f, (tokens[:, 0] + tokens[:, 1]) / 2)


@pytest.mark.skipif(not LARGE, reason="VGG19 is large: COG_TEST_LARGE=0 skips it")
@pytest.mark.slow
def test_timm_vgg_fc7_equals_torchvision_fc7_after_relu():
    import torchvision

    tv = torchvision.models.vgg19_bn(weights=None).eval()
    card = zoo.get_card("sup_vgg19")
    net = zoo.build_arch(card).eval()
    zoo.load_strict(net, convert("tv_vgg", tv.state_dict()), card, "torchvision vgg19_bn")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        ref = tv.classifier[:-1](torch.flatten(tv.avgpool(tv.features(x)), 1))
        assert torch.allclose(net(x), ref, atol=1e-4)


# ----------------------------------------------------------------------------- converters


def head_tensors(card: zoo.ModelCard) -> dict[str, torch.Tensor]:
    return {p.replace("*", "weight"): torch.zeros(3, 2) for p in card.dropped_keys}


def prefixed(prefix: str, sd: dict) -> dict:
    return {prefix + k: v for k, v in sd.items()}


def original_layout(converter: str, sd: dict, head: dict) -> dict:
    """The checkpoint as the release ships it, made from the architecture's state dict."""
    one = next(iter(sd))
    extra = {"epoch": 100, "arch": "synthetic"}
    if converter == "plain":
        return {**sd, **head}
    if converter in ("deit", "mae"):
        return {"model": {**sd, **head}, **extra}
    if converter in ("moco", "mochi"):
        return {
            "state_dict": {
                **prefixed("module.encoder_q.", sd),
                "module.encoder_q.fc.0.weight": torch.zeros(8, 4),
                "module.encoder_q.fc.2.bias": torch.zeros(4),
                f"module.encoder_k.{one}": sd[one],
                "module.queue": torch.zeros(4, 16),
            },
            **extra,
        }
    if converter == "infomin":
        return {
            "model": {**prefixed("module.encoder.", sd), "module.head.0.weight": torch.zeros(2)}
        }
    if converter == "swav":
        return {
            **prefixed("module.", sd),
            "module.projection_head.0.weight": torch.zeros(8, 4),
            "module.prototypes.weight": torch.zeros(30, 4),
        }
    if converter == "obow":
        return {"network": {**sd, "fc.weight": torch.zeros(8, 4), "fc.bias": torch.zeros(8)}}
    if converter == "compress":
        return {"model": {**prefixed("module.", sd), "module.fc.0.weight": torch.zeros(8, 4)}}
    if converter in ("cutmix", "mixup", "manifold_mixup"):
        return {"state_dict": prefixed("module.", {**sd, **head}), "best_err1": 21.0}
    if converter in ("relabel", "mealv2"):
        return prefixed("module.", {**sd, **head})
    if converter == "advrobust":
        return {
            "model": {
                **prefixed("module.model.", {**sd, **head}),
                f"module.attacker.model.{one}": sd[one],
                "module.normalizer.new_mean": torch.zeros(3, 1, 1),
            },
            **extra,
        }
    if converter == "mopro":
        body = {k: v for k, v in sd.items()}
        return {
            "state_dict": {
                **prefixed("module.encoder_q.", body),
                "module.encoder_q.fc.weight": torch.zeros(128, 4),
                "module.encoder_q.classifier.weight": torch.zeros(1000, 4),
                "module.encoder_q.classifier.bias": torch.zeros(1000),
                f"module.encoder_k.{one}": sd[one],
            }
        }
    if converter == "mocov3_vit":
        return {
            "state_dict": {
                **prefixed("module.base_encoder.", sd),
                "module.base_encoder.head.0.weight": torch.zeros(8, 4),
                f"module.momentum_encoder.{one}": sd[one],
                "module.predictor.0.weight": torch.zeros(8, 8),
            }
        }
    if converter == "ibot":
        return {
            "state_dict": {
                **sd,
                "head.mlp.0.weight": torch.zeros(8, 4),
                "masked_embed": torch.zeros(4),
            }
        }
    if converter == "tv_vgg":
        tv = {}
        for k, v in {**sd, **head}.items():
            k = k.replace("pre_logits.fc1", "classifier.0").replace(
                "pre_logits.fc2", "classifier.3"
            )
            tv[k.replace("head.fc", "classifier.6")] = (
                v.flatten(1) if v.dim() == 4 and "classifier" in k else v
            )
        return tv
    if converter == "efficientnet_pytorch":
        return effnet_pytorch_layout({**sd, **head})
    raise AssertionError(f"no synthetic layout for converter {converter}")


def effnet_pytorch_layout(sd: dict) -> dict:
    """timm's EfficientNet keys -> EfficientNet-PyTorch's: flat `_blocks.N`, `_`-names."""
    top = {"conv_stem.": "_conv_stem.", "bn1.": "_bn0.", "conv_head.": "_conv_head."}
    top |= {"bn2.": "_bn1.", "classifier.": "_fc."}
    inverted = {"conv_pw.": "_expand_conv.", "bn1.": "_bn0.", "conv_dw.": "_depthwise_conv."}
    inverted |= {"bn2.": "_bn1.", "conv_pwl.": "_project_conv.", "bn3.": "_bn2."}
    separable = {"conv_dw.": "_depthwise_conv.", "bn1.": "_bn1.", "conv_pw.": "_project_conv."}
    separable |= {"bn2.": "_bn2."}
    blocks = sorted(
        {tuple(int(i) for i in k.split(".")[1:3]) for k in sd if k.startswith("blocks.")}
    )
    flat = {b: n for n, b in enumerate(blocks)}
    out = {}
    for k, v in sd.items():
        table, prefix, rest = top, "", k
        if k.startswith("blocks."):
            _, s, j, rest = k.split(".", 3)
            inv = f"blocks.{s}.{j}.conv_pwl.weight" in sd
            table, prefix = (inverted if inv else separable), f"_blocks.{flat[int(s), int(j)]}."
        old = next((o for o in table if rest.startswith(o)), None)
        out[prefix + (table[old] + rest[len(old) :] if old else rest)] = v
    return out


ROUND_TRIP = [n for n in ALL if zoo.get_card(n).arch.source != "cog"]


def fresh_state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The architecture's keys with new values (positive: BN variances), so a load shows."""
    g = torch.Generator().manual_seed(1)
    return {
        k: (torch.rand(v.shape, generator=g) + 0.5 if v.is_floating_point() else v.clone())
        for k, v in net.state_dict().items()
    }


def fresh(card: zoo.ModelCard) -> dict[str, torch.Tensor]:
    key = arch_key(card)
    if key not in _FRESH:
        _FRESH[key] = fresh_state(built(card))
    return _FRESH[key]


@pytest.mark.parametrize("name", ROUND_TRIP)
def test_converter_round_trips_the_original_layout_strictly(name):
    card = small(zoo.get_card(name))
    if card.arch.name in LARGE_ARCHS and not LARGE:
        pytest.skip(f"{card.arch.name}: large, COG_TEST_LARGE=0 skips it")
    net = built(card)
    sd = fresh(card)
    for w in [None, *card.weights]:
        conv = (w.converter if w is not None and w.converter else None) or card.converter
        if w is not None and w.kind == "hub":  # hub files are in timm's layout
            state = zoo.timm_hub_filter(net, convert(conv, {**sd, **head_tensors(card)}))
        else:
            state = convert(conv, original_layout(conv, sd, head_tensors(card)))
        zoo.load_strict(net, state, card, f"synthetic {conv}")
        got = net.state_dict()
        assert all(torch.equal(got[k], sd[k]) for k in sd), name

    key = next(k for k in sd if k.endswith("weight"))
    renamed = {(k + "_x" if k == key else k): v for k, v in sd.items()}
    with pytest.raises(CogError) as e:
        zoo.load_strict(
            net,
            convert(card.converter, original_layout(card.converter, renamed, {})),
            card,
            "corrupt.pth",
        )
    assert key in str(e.value) and "missing" in str(e.value) and "unexpected" in str(e.value)
    missing = {k: v for k, v in sd.items() if k != key}
    with pytest.raises(CogError, match="missing") as e:
        zoo.load_strict(
            net,
            convert(card.converter, original_layout(card.converter, missing, {})),
            card,
            "truncated.pth",
        )
    assert key in str(e.value) and "corrupt" not in str(e.value)


def test_shape_mismatch_is_reported():
    card = zoo.get_card("sup_resnet50")
    net = built(card)
    sd = dict(net.state_dict())
    sd["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    with pytest.raises(CogError, match=r"shape mismatch.*conv1.weight"):
        zoo.load_strict(net, sd, card, "x.pth")


# ----------------------------------------------------------------------------- loading files


def tiny_card(name: str = "tiny_moco", **over) -> dict:
    return tiny_resnet_card(name, **over)


def tiny_state() -> dict[str, torch.Tensor]:
    card = zoo.ModelCard.from_dict(tiny_card())
    return fresh_state(zoo.build_arch(card))


def save_moco(path: Path, sd: dict) -> Path:
    torch.save(original_layout("moco", sd, {}), path)
    return path


def test_load_local_checkpoint_fills_every_weight(isolated):
    zoo.register_card(tiny_card())
    sd = tiny_state()
    path = save_moco(isolated / "run.pth.tar", sd)
    b = zoo.load("tiny_moco", checkpoint=path)
    assert b.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert b.feature_dim == 96 and b.card.name == "tiny_moco" and not b.training
    got = b.net.state_dict()
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    assert not any(p.requires_grad for p in b.parameters())
    assert not b.train().training and not b.net.training  # stays frozen
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 90, 3), np.uint8))
    with torch.no_grad():
        assert b(b.transform(img)[None]).shape == (1, 96)


def test_no_weights_never_means_random_weights(isolated):
    zoo.register_card(tiny_card())
    with pytest.raises(CogError) as e:
        zoo.load("tiny_moco")
    msg = str(e.value)
    target = Path(torch.hub.get_dir()) / "checkpoints" / "tiny-abcdef12.pth"
    assert "https://example.invalid/models/tiny-abcdef12.pth" in msg and str(target) in msg
    assert "offline" in msg and "--checkpoint" in msg and "random_init" in msg
    b = zoo.load("tiny_moco", random_init=True)
    assert b.weights_sha256 == "random-init"


def test_cached_url_file_is_used_and_sha256_checked(isolated):
    sd = tiny_state()
    target = Path(torch.hub.get_dir()) / "checkpoints" / "tiny.pth"
    target.parent.mkdir(parents=True)
    save_moco(target, sd)
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    weights = [{"url": "https://example.invalid/tiny.pth", "sha256": digest}]
    zoo.register_card(tiny_card(weights=weights))
    assert zoo.load("tiny_moco").weights_sha256 == digest
    bad = [{"url": "https://example.invalid/tiny.pth", "sha256": "0" * 64}]
    zoo.register_card(tiny_card(weights=bad), overwrite=True)
    with pytest.raises(CogError, match=rf"sha256 mismatch.*{digest}.*delete it"):
        zoo.load("tiny_moco")


def test_torch_hub_hash_prefix_is_verified_when_sha256_unknown(isolated):
    target = Path(torch.hub.get_dir()) / "checkpoints" / "tiny-abcdef12.pth"
    target.parent.mkdir(parents=True)
    save_moco(target, tiny_state())
    zoo.register_card(tiny_card())
    with pytest.raises(CogError, match=r"sha256 prefix.*abcdef12"):
        zoo.load("tiny_moco")


def test_url_download_extracts_a_zip_member(isolated, monkeypatch):
    monkeypatch.delenv("COG_OFFLINE")
    inner = save_moco(isolated / "w.pth.tar", tiny_state())
    archive = isolated / "release.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(inner, "release/student.pth.tar")
    weights = [{"url": archive.as_uri(), "member": "release/student.pth.tar", "sha256": None}]
    zoo.register_card(tiny_card(weights=weights))
    b = zoo.load("tiny_moco")
    assert b.weights_sha256 == hashlib.sha256(inner.read_bytes()).hexdigest()
    assert (Path(torch.hub.get_dir()) / "checkpoints" / "student.pth.tar").is_file()


def test_hand_placed_zip_archive_is_unpacked_offline(isolated, capsys):
    inner = save_moco(isolated / "w.pth.tar", tiny_state())
    ckpts = Path(torch.hub.get_dir()) / "checkpoints"
    ckpts.mkdir(parents=True)
    url = "https://example.invalid/release.zip"
    weights = [{"url": url, "member": "release/student.pth.tar", "sha256": None}]
    zoo.register_card(tiny_card(weights=weights))
    with pytest.raises(CogError, match=r"release\.zip \(cog takes 'release/student"):
        zoo.load("tiny_moco")  # offline (COG_OFFLINE), nothing placed yet
    with zipfile.ZipFile(ckpts / "release.zip", "w") as zf:
        zf.write(inner, "release/student.pth.tar")  # where the message says
    b = zoo.load("tiny_moco")
    assert b.weights_sha256 == hashlib.sha256(inner.read_bytes()).hexdigest()
    # no published checksum: loaded, and said so once with the digest that gets recorded
    err = capsys.readouterr().err
    assert "no published checksum" in err and b.weights_sha256 in err
    zoo.load("tiny_moco")
    assert "no published checksum" not in capsys.readouterr().err


def test_local_file_of_any_release_loads(isolated):
    """--checkpoint with a source's own release layout (MAE: the nested `model` file, whose
    converter is named on its URL source, not on the card)."""
    card = zoo.get_card("mae_vitb16")
    assert card.converter == "plain" and {w.converter for w in card.weights} >= {"mae"}
    sd = fresh(card)
    path = isolated / "mae_pretrain_vit_base.pth"
    torch.save(original_layout("mae", sd, head_tensors(card)), path)
    b = zoo.load("mae_vitb16", checkpoint=path)
    got = b.net.state_dict()
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    # a file no release converter fits still names the card's own layout problem
    torch.save({"model": {"nonsense.weight": torch.zeros(2)}}, path)
    with pytest.raises(
        CogError, match=r"(?s)base\.pth: no release layout.*'plain'.*\n- converter 'mae'"
    ):
        zoo.load("mae_vitb16", checkpoint=path)


def test_manual_source_prints_instructions(isolated):
    weights = [{"manual": "Download it from https://drive.example/x .", "filename": "x.pth"}]
    zoo.register_card(tiny_card(weights=weights))
    with pytest.raises(CogError, match=r"https://drive.example/x .*put the file at .*x\.pth"):
        zoo.load("tiny_moco")


def test_hub_cache_is_read_and_blob_hash_checked(isolated):
    import huggingface_hub.constants as hfc
    from safetensors.torch import save_file

    card = zoo.ModelCard.from_dict(tiny_card())
    net = zoo.build_arch(card)
    sd = fresh_state(net)
    repo = Path(hfc.HF_HUB_CACHE) / "models--timm--tiny.test"
    blob_tmp = isolated / "m.safetensors"
    save_file({**sd, "fc.weight": torch.zeros(3, 96)}, str(blob_tmp))
    digest = hashlib.sha256(blob_tmp.read_bytes()).hexdigest()
    (repo / "blobs").mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    blob = repo / "blobs" / digest
    blob_tmp.rename(blob)
    snap = repo / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (snap / "model.safetensors").symlink_to(blob)
    zoo.register_card(tiny_card(converter="plain", weights=[{"hub": "timm/tiny.test"}]))
    b = zoo.load("tiny_moco")
    assert b.weights_sha256 == digest
    got = b.net.state_dict()
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    with open(blob, "r+b") as f:  # corrupt one byte in the cache
        f.seek(-1, 2)
        f.write(b"\x00" if f.read(1) != b"\x00" else b"\x01")
    with pytest.raises(CogError, match="differs from the hub"):
        zoo.load("tiny_moco")


# ----------------------------------------------------------------------------- user cards


def test_register_card_writes_a_validated_user_card(isolated):
    path = zoo.register_card(tiny_card())
    assert path == isolated / "cog" / "models" / "tiny_moco.yaml"
    assert yaml.safe_load(path.read_text())["converter"] == "moco"
    assert "tiny_moco" in zoo.list_models("local")
    with pytest.raises(CogError, match="overwrite=True"):
        zoo.register_card(tiny_card())
    with pytest.raises(CogError, match="already used by 'sup_resnet50'"):
        zoo.register_card(tiny_card(name="x", aliases=["Sup."]))
    with pytest.raises(CogError, match="group"):
        zoo.register_card(tiny_card(name="y", group="nope"))
    assert not (path.parent / "y.yaml").exists()


def test_mochi_compact_card_form_is_accepted(isolated):
    sd = tiny_state()
    ckpt = save_moco(isolated / "checkpoint_0002.pth.tar", sd)
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    zoo.register_card(
        {
            "name": "my_mochi",
            "group": "local",
            "arch": "timm:test_resnet",
            "checkpoint": {"path": str(ckpt), "sha256": digest},
            "converter": "moco",
            "feature_dim": 96,
            "preprocess": {"resize": 64, "crop": 64},
            "description": "MoCo-v2 + MoCHi, 2 epochs",
            "training": {"epochs": 2},
        }
    )
    b = zoo.load("my_mochi")
    assert b.weights_sha256 == digest and b.card.title.startswith("MoCo-v2")
    ckpt.write_bytes(ckpt.read_bytes() + b"x")
    with pytest.raises(CogError, match="mismatch"):
        zoo.load("my_mochi")


def test_composite_card_stacks_a_projection(isolated, monkeypatch):
    proj = torch.nn.Linear(96, 8)
    torch.save(proj.state_dict(), isolated / "proj.pt")

    def load_projection(path):
        m = torch.nn.Linear(96, 8)
        m.load_state_dict(torch.load(path))
        return m

    monkeypatch.setitem(
        sys.modules, "cog.compress.files", types.SimpleNamespace(load_projection=load_projection)
    )
    zoo.register_card(tiny_card())
    digest = hashlib.sha256((isolated / "proj.pt").read_bytes()).hexdigest()
    spec = {"kind": "tldr", "path": str(isolated / "proj.pt"), "dim": 8, "sha256": digest}
    zoo.register_card(
        {"name": "tiny_tldr", "group": "local", "base": "tiny_moco", "projection": spec}
    )
    card = zoo.get_card("tiny_tldr")
    assert card.preprocess == zoo.get_card("tiny_moco").preprocess and card.feature_dim == 8
    sd = tiny_state()
    path = save_moco(isolated / "w.pth", sd)
    b = zoo.load("tiny_tldr", checkpoint=path)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        base = zoo.load("tiny_moco", checkpoint=path)(x)
        assert torch.allclose(b(x), proj(base), atol=1e-6)
    assert b.weights_sha256.endswith("+" + digest)
    with pytest.raises(CogError, match="cannot set"):
        zoo.register_card(
            {
                "name": "t2",
                "group": "local",
                "base": "tiny_moco",
                "projection": spec,
                "converter": "plain",
            }
        )
    with pytest.raises(CogError, match="base model 'nope'"):
        zoo.register_card({"name": "t3", "group": "local", "base": "nope", "projection": spec})


def test_malformed_user_card_is_reported_and_left_out(isolated, capsys):
    zoo.register_card(tiny_card())
    d = isolated / "cog" / "models"
    (d / "bad.yaml").write_text("name: [unclosed\n")
    (d / "typo.yaml").write_text(yaml.safe_dump(tiny_card("typo", grup="local")))
    (d / "clash.yaml").write_text(yaml.safe_dump(tiny_card("clash", aliases=["Sup."])))
    names = zoo.list_models()
    err = capsys.readouterr().err
    assert "tiny_moco" in names and "sup_resnet50" in names
    assert not {"typo", "clash"} & set(names)
    for f, why in (("bad", "not valid YAML"), ("typo", "unknown field"), ("clash", "already")):
        line = next(x for x in err.splitlines() if f"{f}.yaml" in x)
        assert why in line and "left out" in line, line
    assert zoo.load("tiny_moco", random_init=True).feature_dim == 96
    with pytest.raises(CogError, match=r"its user card was left out: .*typo\.yaml"):
        zoo.get_card("typo")
    from cog.cli.models import main

    assert main(["list", "--names"]) == 0 and "tiny_moco" in capsys.readouterr().out


def unseen_layout(sd: dict) -> dict:
    """A layout cog has never seen: (name with '/' for '.', tensor) pairs under `trunk`."""
    return {"format": "pairs-v7", "trunk": [(k.replace(".", "/"), v) for k, v in sd.items()]}


CONVERTER_SOURCE = """
def convert(ckpt):
    "pairs-v7 layout: (slash/name, tensor) pairs under `trunk`."
    return {name.replace("/", "."): t for name, t in ckpt["trunk"]}
"""


@pytest.mark.parametrize("where", ["file", "module"])
def test_user_card_with_its_own_converter_loads_an_unseen_layout(isolated, monkeypatch, where):
    sd = tiny_state()
    ckpt = isolated / "pairs.pt"
    torch.save(unseen_layout(sd), ckpt)
    d = isolated / "cog" / "models"
    d.mkdir(parents=True, exist_ok=True)
    if where == "file":
        (d / "pairs_layout.py").write_text(CONVERTER_SOURCE)
        spec = "pairs_layout.py:convert"
    else:
        pkg = isolated / "site"
        (pkg / "mylab").mkdir(parents=True)
        (pkg / "mylab" / "__init__.py").write_text("")
        (pkg / "mylab" / "layouts.py").write_text(CONVERTER_SOURCE)
        monkeypatch.syspath_prepend(str(pkg))
        spec = "mylab.layouts:convert"
    weights = [{"path": str(ckpt), "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest()}]
    (d / "pairs.yaml").write_text(
        yaml.safe_dump(tiny_card("pairs", converter=spec, weights=weights))
    )
    with pytest.raises(CogError, match="non-tensor"):  # no built-in converter reads it
        convert("plain", torch.load(ckpt))
    b = zoo.load("pairs")
    got = b.net.state_dict()
    assert all(torch.equal(got[k], sd[k]) for k in sd)
    # a converter that is not there: the card is left out (file) or the load says why
    bad = tiny_card("pairs2", converter=spec.replace("convert", "nope"), weights=weights)
    (d / "pairs2.yaml").write_text(yaml.safe_dump(bad))
    with pytest.raises(CogError, match="has no function 'nope'"):
        zoo.load("pairs2")
    missing = tiny_card("pairs3", converter="no_such_file.py:convert", weights=weights)
    (d / "pairs3.yaml").write_text(yaml.safe_dump(missing))
    assert "pairs3" not in zoo.list_models() and "pairs" in zoo.list_models()


def test_missing_wheel_says_which_pip_install_brings_it(isolated):
    src = {"package": "cog-no-such-wheel", "filename": "w/x.pth", "sha256": "0" * 64}
    zoo.register_card(tiny_card("wheel", weights=[src]))
    with pytest.raises(CogError, match=r"pip install cog-no-such-wheel"):
        zoo.load("wheel")
    with pytest.raises(CogError, match="needs `filename`"):
        zoo.register_card(tiny_card("w2", weights=[{"package": "x", "sha256": "0" * 64}]))


def test_fingerprint_is_recorded_verified_and_refuses_other_weights(isolated, capsys):
    from cog.cli.models import main

    sd = tiny_state()
    ckpt = save_moco(isolated / "w.pth", sd)
    weights = [{"path": str(ckpt), "sha256": hashlib.sha256(ckpt.read_bytes()).hexdigest()}]
    path = zoo.register_card(tiny_card(weights=weights))
    assert main(["check", "tiny_moco"]) == 0
    assert "fingerprint    none on the card" in capsys.readouterr().out
    assert main(["check", "tiny_moco", "--record"]) == 0
    fp = yaml.safe_load(path.read_text())["fingerprint"]
    assert fp["input"] == "cog-canonical-v1" and len(fp["images"]) == 3
    assert main(["check", "tiny_moco"]) == 0
    assert "fingerprint    verified" in capsys.readouterr().out
    other = save_moco(isolated / "other.pth", {k: v * 1.5 for k, v in sd.items()})
    assert main(["check", "tiny_moco", "--checkpoint", str(other)]) == 2
    err = capsys.readouterr().err
    assert "does not reproduce its card's reference outputs" in err and "norm" in err
    assert main(["check", "tiny_moco", "--record", "--random-init"]) == 2


# ----------------------------------------------------------------------------- CLI


def test_cli_list_show_check(isolated, capsys):
    from cog.cli.models import main

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert f"{len(ALL)} models" in out and "clip_resnet50" in out
    assert main(["list", "--group", "sup", "--names"]) == 0
    assert capsys.readouterr().out.split() == ["sup_resnet50"]
    assert main(["show", "d-CLIP"]) == 0
    out = capsys.readouterr().out
    assert "0.48145466" in out and "clip_rn50" in out and "not cached" in out
    zoo.register_card(tiny_card())
    path = save_moco(isolated / "w.pth", tiny_state())
    assert main(["check", "tiny_moco", "--checkpoint", str(path)]) == 0
    out = capsys.readouterr().out
    assert "feature dim    96" in out and "strict load    ok" in out
    bad = isolated / "bad.pth"
    torch.save({"state_dict": {"module.encoder_q.nope": torch.zeros(1)}}, bad)
    assert main(["check", "tiny_moco", "--checkpoint", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "missing" in err and "nope" in err
    assert main(["show", "no_such_model"]) == 2


def test_read_checkpoint_formats(isolated):
    import argparse

    from safetensors.torch import save_file

    lin = torch.nn.Linear(3, 2)
    scripted = torch.jit.script(lin)
    scripted.save(str(isolated / "clip_like.pt"))  # TorchScript archive, like CLIP's RN50.pt
    # a TorchScript archive carries code: refused unless trusted (flag or pinned sha256)
    with pytest.raises(CogError, match=r"clip_like\.pt: is a TorchScript archive.*--trust-ch"):
        zoo.read_checkpoint(isolated / "clip_like.pt")
    with pytest.warns(UserWarning):
        obj, how = zoo.load_checkpoint(isolated / "clip_like.pt", "--trust-checkpoint")
    assert set(obj) == {"weight", "bias"} and how == "torchscript (--trust-checkpoint)"
    save_file(lin.state_dict(), str(isolated / "m.safetensors"))
    assert set(zoo.read_checkpoint(isolated / "m.safetensors")) == {"weight", "bias"}
    torch.save(
        {"args": argparse.Namespace(lr=0.1), "state_dict": lin.state_dict()},
        isolated / "old.pth.tar",
    )  # argparse options pickled by old training scripts: allow-listed data, no warning
    obj, how = zoo.load_checkpoint(isolated / "old.pth.tar")
    assert how == "weights_only" and obj["args"].lr == 0.1
    (isolated / "cut.pth").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CogError, match=r"cut\.pth"):
        zoo.read_checkpoint(isolated / "cut.pth")
    with pytest.raises(CogError, match="no such checkpoint"):
        zoo.read_checkpoint(isolated / "absent.pth")


PYCLS = [n for n in zoo.list_models() if "effnet" in zoo.get_card(n).arch.name]


@pytest.mark.parametrize("name", PYCLS)
def test_pycls_input_is_flipped_to_bgr_exactly_once(name):
    """The card's transform and the architecture could each flip RGB->BGR; twice is RGB again."""
    card = zoo.get_card(name)
    arch_flips = card.arch.kwargs.get("flip_to_bgr", True)
    assert len(PYCLS) == 2
    assert (card.preprocess.channel_order == "BGR") + bool(arch_flips) == 1


def test_composite_names_with_plus_are_valid(tmp_path, monkeypatch):
    monkeypatch.setenv("COG_HOME", str(tmp_path))
    card = zoo.get_card("sup_resnet50").to_dict()
    card.update(name="sup_resnet50+pcaw64x", aliases=[])
    zoo.ModelCard.from_dict(card)


def test_vgg_fc7_width_passes_the_load_time_dimension_check():
    """timm's VGG reports num_features=512 (conv channels) but its fc7 is 4096 wide."""
    b = zoo.load("sup_vgg19", random_init=True)
    with torch.inference_mode():
        assert b(torch.zeros(1, 3, 224, 224)).shape == (1, 4096)
