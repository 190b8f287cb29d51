"""cog.zoo.archs: builders give the paper's features, converters read the ORIGINAL key layouts.

The original layouts below are written from the original code (see cog.zoo.archs.SPECS[...].source),
independently of the converters: key names, shapes and the parameter each tensor must land in.
Every synthetic tensor holds distinct values, so a value check proves the key map.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from cog import CogError
from cog.zoo.archs import ARCHS, CONVERTERS, DROPPED, FEATURE_DIMS, INPUT_SIZES, SPECS, convert
from cog.zoo.archs.byol_resnet import SameConv2d, SameMaxPool2d, same_padding

DIMS = {
    "nat_m4": 1536,
    "t2t_vit_t_14": 384,
    "pycls_effnet_b1": 1280,
    "pycls_effnet_b4": 1792,
    "byol_resnet50": 2048,
    "simclrv2_resnet50": 2048,
    "clip_rn50": 1024,
}
NAMES = list(DIMS)  # written here from the papers, not read from cog
SIZES = {"pycls_effnet_b1": 240, "pycls_effnet_b4": 380}
R50_STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # planes, blocks, stride

Layout = dict[str, tuple[tuple[int, ...], str | None]]  # original key -> (shape, target key)


def _bn(layout: Layout, orig: str, target: str | None, c: int, tracked: bool = True) -> None:
    for leaf in ("weight", "bias", "running_mean", "running_var"):
        layout[f"{orig}.{leaf}"] = ((c,), target and f"{target}.{leaf}")
    if tracked:
        layout[f"{orig}.num_batches_tracked"] = ((), target and f"{target}.num_batches_tracked")


def _with(layout: Layout, orig: str, target: str | None, shape: tuple[int, ...]) -> None:
    layout[orig] = (shape, target)


# ----------------------------------------------------------------------------- layouts
# NAT-M4 net.config blocks: in out kernel stride expand mid se shortcut
NAT_CONFIG = """
24 24 3 1 1 - n y | 24 32 3 2 3 72 n n | 32 32 5 1 4 128 n y | 32 32 3 1 3 96 n y
32 48 5 2 4 128 y n | 48 48 5 1 4 192 y y | 48 48 3 1 6 288 y y | 48 48 5 1 3 144 y y
48 96 7 2 6 288 n n | 96 96 5 1 6 576 n y | 96 96 3 1 3 288 n y | 96 96 5 1 4 384 n y
96 136 3 1 6 576 y n | 136 136 5 1 6 816 y y | 136 136 7 1 6 816 y y | 136 136 3 1 4 544 y y
136 192 3 2 6 816 y n | 192 192 3 1 6 1152 y y | 192 192 5 1 6 1152 y y | 192 192 3 1 3 576 y y
"""


def _divisible8(v: float) -> int:  # TF MobileNet channel rounding used by NAT's SEModule
    r = max(8, int(v + 4) // 8 * 8)
    return r + 8 if r < 0.9 * v else r


def nat_layout() -> Layout:
    """net.weights keys are the architecture's own (NATNet module names)."""
    lay: Layout = {}

    def w(key: str, shape: tuple[int, ...]) -> None:
        _with(lay, key, key, shape)

    def bn(key: str, c: int) -> None:
        _bn(lay, key, key, c)

    w("first_conv.conv.weight", (24, 3, 3, 3))
    bn("first_conv.bn", 24)
    rows = [r.split() for r in NAT_CONFIG.replace("\n", "|").split("|") if r.strip()]
    for i, row in enumerate(rows):
        c_in, c_out, k, _s, e = (int(v) for v in row[:5])
        mid = c_in * e if row[5] == "-" else int(row[5])
        p = f"blocks.{i}.mobile_inverted_conv"
        if e != 1:
            w(f"{p}.inverted_bottleneck.conv.weight", (mid, c_in, 1, 1))
            bn(f"{p}.inverted_bottleneck.bn", mid)
        w(f"{p}.depth_conv.conv.weight", (mid, 1, k, k))
        bn(f"{p}.depth_conv.bn", mid)
        if row[6] == "y":
            se = _divisible8(mid // 4)
            w(f"{p}.depth_conv.se.fc.reduce.weight", (se, mid, 1, 1))
            w(f"{p}.depth_conv.se.fc.reduce.bias", (se,))
            w(f"{p}.depth_conv.se.fc.expand.weight", (mid, se, 1, 1))
            w(f"{p}.depth_conv.se.fc.expand.bias", (mid,))
        w(f"{p}.point_linear.conv.weight", (c_out, mid, 1, 1))
        bn(f"{p}.point_linear.bn", c_out)
    w("final_expand_layer.conv.weight", (1152, 192, 1, 1))
    bn("final_expand_layer.bn", 1152)
    w("feature_mix_layer.conv.weight", (1536, 1152, 1, 1))
    _with(lay, "classifier.linear.weight", None, (1000, 1536))
    _with(lay, "classifier.linear.bias", None, (1000,))
    return lay


def t2t_layout() -> Layout:
    lay: Layout = {}

    def linear(name: str, out: int, inp: int, bias: bool = True) -> None:
        _with(lay, f"{name}.weight", name + ".weight", (out, inp))
        if bias:
            _with(lay, f"{name}.bias", name + ".bias", (out,))

    def norm(name: str, c: int) -> None:
        for leaf in ("weight", "bias"):
            _with(lay, f"{name}.{leaf}", f"{name}.{leaf}", (c,))

    for name, dim in (("attention1", 147), ("attention2", 576)):
        p = f"tokens_to_token.{name}"
        norm(f"{p}.norm1", dim)
        linear(f"{p}.attn.qkv", 192, dim, bias=False)
        linear(f"{p}.attn.proj", 64, 64)
        norm(f"{p}.norm2", 64)
        linear(f"{p}.mlp.fc1", 64, 64)
        linear(f"{p}.mlp.fc2", 64, 64)
    linear("tokens_to_token.project", 384, 576)
    _with(lay, "cls_token", "cls_token", (1, 1, 384))
    _with(lay, "pos_embed", "pos_embed", (1, 197, 384))
    for i in range(14):
        p = f"blocks.{i}"
        norm(f"{p}.norm1", 384)
        linear(f"{p}.attn.qkv", 1152, 384, bias=False)
        linear(f"{p}.attn.proj", 384, 384)
        norm(f"{p}.norm2", 384)
        linear(f"{p}.mlp.fc1", 1152, 384)
        linear(f"{p}.mlp.fc2", 384, 1152)
    norm("norm", 384)
    _with(lay, "head.weight", None, (1000, 384))
    _with(lay, "head.bias", None, (1000,))
    return lay


PYCLS = {  # EN.* of configs/dds_baselines/effnet/EN-B{1,4}_dds_8gpu.yaml
    "b1": (32, [2, 3, 3, 4, 4, 5, 2], [16, 24, 40, 80, 112, 192, 320], 1280),
    "b4": (48, [2, 4, 4, 6, 6, 8, 2], [24, 32, 56, 112, 160, 272, 448], 1792),
}
PYCLS_EXP, PYCLS_K = [1, 6, 6, 6, 6, 6, 6], [3, 3, 5, 3, 5, 5, 3]


def pycls_layout(variant: str) -> Layout:
    stem, depths, widths, head = PYCLS[variant]
    lay: Layout = {}
    _with(lay, "stem.conv.weight", "net.conv_stem.weight", (stem, 3, 3, 3))
    _bn(lay, "stem.bn", "net.bn1", stem)
    w_in = stem
    for s, (d, w, e, k) in enumerate(zip(depths, widths, PYCLS_EXP, PYCLS_K, strict=True), 1):
        for b in range(1, d + 1):
            o, t = f"s{s}.b{b}", f"net.blocks.{s - 1}.{b - 1}"
            w_exp, w_se = int(w_in * e), int(w_in * 0.25)
            has_exp = w_exp != w_in
            if has_exp:
                _with(lay, f"{o}.exp.weight", f"{t}.conv_pw.weight", (w_exp, w_in, 1, 1))
                _bn(lay, f"{o}.exp_bn", f"{t}.bn1", w_exp)
            _with(lay, f"{o}.dwise.weight", f"{t}.conv_dw.weight", (w_exp, 1, k, k))
            _bn(lay, f"{o}.dwise_bn", f"{t}.bn2" if has_exp else f"{t}.bn1", w_exp)
            _with(lay, f"{o}.se.f_ex.0.weight", f"{t}.se.conv_reduce.weight", (w_se, w_exp, 1, 1))
            _with(lay, f"{o}.se.f_ex.0.bias", f"{t}.se.conv_reduce.bias", (w_se,))
            _with(lay, f"{o}.se.f_ex.2.weight", f"{t}.se.conv_expand.weight", (w_exp, w_se, 1, 1))
            _with(lay, f"{o}.se.f_ex.2.bias", f"{t}.se.conv_expand.bias", (w_exp,))
            proj, proj_bn = ("conv_pwl", "bn3") if has_exp else ("conv_pw", "bn2")
            _with(lay, f"{o}.lin_proj.weight", f"{t}.{proj}.weight", (w, w_exp, 1, 1))
            _bn(lay, f"{o}.lin_proj_bn", f"{t}.{proj_bn}", w)
            w_in = w
    _with(lay, "head.conv.weight", "net.conv_head.weight", (head, w_in, 1, 1))
    _bn(lay, "head.conv_bn", "net.bn2", head)
    _with(lay, "head.fc.weight", None, (1000, head))
    _with(lay, "head.fc.bias", None, (1000,))
    return lay


def torchvision_r50_layout(tracked: bool) -> Layout:
    """byol-convert writes torchvision names (and no num_batches_tracked)."""
    lay: Layout = {}
    _with(lay, "conv1.weight", "conv1.weight", (64, 3, 7, 7))
    _bn(lay, "bn1", "bn1", 64, tracked)
    c_in = 64
    for li, (p, n, _) in enumerate(R50_STAGES, 1):
        for j in range(n):
            b = f"layer{li}.{j}"
            for name, shape in (
                ("conv1", (p, c_in, 1, 1)),
                ("conv2", (p, p, 3, 3)),
                ("conv3", (4 * p, p, 1, 1)),
            ):
                _with(lay, f"{b}.{name}.weight", f"{b}.{name}.weight", shape)
            for name, c in (("bn1", p), ("bn2", p), ("bn3", 4 * p)):
                _bn(lay, f"{b}.{name}", f"{b}.{name}", c, tracked)
            if j == 0:
                ds = f"{b}.downsample.0.weight"
                _with(lay, ds, ds, (4 * p, c_in, 1, 1))
                _bn(lay, f"{b}.downsample.1", f"{b}.downsample.1", 4 * p, tracked)
            c_in = 4 * p
    _with(lay, "fc.weight", None, (1000, 2048))
    _with(lay, "fc.bias", None, (1000,))
    return lay


def separius_layout() -> Layout:
    """SimCLRv2-Pytorch get_resnet(50, 1, 0): nested Sequentials named net.*."""
    lay: Layout = {}
    _with(lay, "net.0.0.weight", "conv1.weight", (64, 3, 7, 7))
    _bn(lay, "net.0.1.0", "bn1", 64)
    c_in = 64
    for s, (p, n, _) in enumerate(R50_STAGES, 1):
        for j in range(n):
            o, t = f"net.{s}.blocks.{j}", f"layer{s}.{j}"
            _with(lay, f"{o}.net.0.weight", f"{t}.conv1.weight", (p, c_in, 1, 1))
            _bn(lay, f"{o}.net.1.0", f"{t}.bn1", p)
            _with(lay, f"{o}.net.2.weight", f"{t}.conv2.weight", (p, p, 3, 3))
            _bn(lay, f"{o}.net.3.0", f"{t}.bn2", p)
            _with(lay, f"{o}.net.4.weight", f"{t}.conv3.weight", (4 * p, p, 1, 1))
            _bn(lay, f"{o}.net.5.0", f"{t}.bn3", 4 * p)
            if j == 0:
                _with(
                    lay,
                    f"{o}.projection.shortcut.weight",
                    f"{t}.downsample.0.weight",
                    (4 * p, c_in, 1, 1),
                )
                _bn(lay, f"{o}.projection.bn.0", f"{t}.downsample.1", 4 * p)
            c_in = 4 * p
    _with(lay, "fc.weight", None, (1000, 2048))
    _with(lay, "fc.bias", None, (1000,))
    return lay


def openai_clip_layout() -> Layout:
    """OpenAI CLIP RN50 state dict: ModifiedResNet under visual.*, plus the text tower."""
    lay: Layout = {}
    for i, (c_out, c_in) in enumerate(((32, 3), (32, 32), (64, 32)), 1):
        _with(lay, f"visual.conv{i}.weight", f"net.stem.conv{i}.conv.weight", (c_out, c_in, 3, 3))
        _bn(lay, f"visual.bn{i}", f"net.stem.conv{i}.bn", c_out)
    c_in = 64
    names = {1: "conv1_1x1", 2: "conv2_kxk", 3: "conv3_1x1"}
    for s, (p, n, _) in enumerate(R50_STAGES, 1):
        for j in range(n):
            o, t = f"visual.layer{s}.{j}", f"net.stages.{s - 1}.{j}"
            for i, shape in ((1, (p, c_in, 1, 1)), (2, (p, p, 3, 3)), (3, (4 * p, p, 1, 1))):
                _with(lay, f"{o}.conv{i}.weight", f"{t}.{names[i]}.conv.weight", shape)
                _bn(lay, f"{o}.bn{i}", f"{t}.{names[i]}.bn", shape[0])
            if j == 0:
                _with(
                    lay,
                    f"{o}.downsample.0.weight",
                    f"{t}.shortcut.conv.conv.weight",
                    (4 * p, c_in, 1, 1),
                )
                _bn(lay, f"{o}.downsample.1", f"{t}.shortcut.conv.bn", 4 * p)
            c_in = 4 * p
    _with(lay, "visual.attnpool.positional_embedding", "net.head.pos_embed", (50, 2048))
    for ours, theirs, out in (
        ("q", "q_proj", 2048),
        ("k", "k_proj", 2048),
        ("v", "v_proj", 2048),
        ("proj", "c_proj", 1024),
    ):
        _with(lay, f"visual.attnpool.{theirs}.weight", f"net.head.{ours}.weight", (out, 2048))
        _with(lay, f"visual.attnpool.{theirs}.bias", f"net.head.{ours}.bias", (out,))
    for key, shape in (
        ("positional_embedding", (77, 8)),
        ("text_projection", (8, 4)),
        ("logit_scale", ()),
        ("token_embedding.weight", (10, 8)),
        ("transformer.resblocks.0.attn.in_proj_weight", (24, 8)),
        ("ln_final.weight", (8,)),
        ("input_resolution", ()),
        ("context_length", ()),
        ("vocab_size", ()),
    ):
        _with(lay, key, None, shape)
    return lay


def materialize(layout: Layout, offset: float = 0.0, half_convs: bool = False) -> dict:
    """Distinct values per tensor: tensor i holds values in [i, i + 1) (+ offset)."""
    gen = torch.Generator().manual_seed(0)
    out = {}
    for i, (key, (shape, _)) in enumerate(layout.items()):
        if key.endswith("num_batches_tracked"):
            out[key] = torch.tensor(i, dtype=torch.long)
            continue
        t = torch.rand(shape, generator=gen) + i + offset
        out[key] = t.half() if half_convs and len(shape) == 4 else t
    return out


LAYOUTS = {
    "nat_m4": (nat_layout, lambda sd: sd),
    "t2t_vit_t_14": (
        t2t_layout,
        lambda sd: {"epoch": 309, "state_dict_ema": sd, "optimizer": {}, "version": 2},
    ),
    "pycls_effnet_b1": (
        lambda: pycls_layout("b1"),
        lambda sd: {"epoch": 99, "model_state": sd, "optimizer_state": {}, "cfg": "MODEL: ..."},
    ),
    "pycls_effnet_b4": (
        lambda: pycls_layout("b4"),
        lambda sd: {"epoch": 99, "model_state": sd, "optimizer_state": {}, "cfg": "MODEL: ..."},
    ),
    "byol_resnet50": (lambda: torchvision_r50_layout(tracked=False), lambda sd: sd),
    "simclrv2_resnet50": (
        separius_layout,
        lambda sd: {"resnet": sd, "head": {"layers.0.weight": torch.ones(2, 2)}},
    ),
    "clip_rn50": (openai_clip_layout, lambda sd: sd),
}

_MODELS: dict[str, tuple[torch.nn.Module, dict]] = {}


def model_for(name: str, fresh: bool = False) -> torch.nn.Module:
    """Build each architecture once per session (B4 at 380 px is slow on CPU); `fresh`
    restores its random initialisation (converter tests load synthetic values into it)."""
    if name not in _MODELS:
        torch.manual_seed(0)
        model = ARCHS[name]().eval()
        _MODELS[name] = model, {k: v.clone() for k, v in model.state_dict().items()}
    model, init = _MODELS[name]
    if fresh:
        model.load_state_dict(init)
    return model


# ----------------------------------------------------------------------------- tests
def test_registry_is_complete_and_consistent():
    assert sorted(ARCHS) == sorted(NAMES) == sorted(CONVERTERS) == sorted(DROPPED)
    assert FEATURE_DIMS == DIMS
    assert {n: SIZES.get(n, 224) for n in NAMES} == INPUT_SIZES
    for spec in SPECS.values():
        assert spec.dropped and spec.source and spec.checkpoint


@pytest.mark.parametrize("name", NAMES)
def test_converter_places_every_original_tensor(name):
    layout_fn, wrap = LAYOUTS[name]
    layout = layout_fn()
    sd = materialize(layout, half_convs=name == "clip_rn50")
    state, dropped = convert(name, wrap(sd))
    model = model_for(name)
    model.load_state_dict(state, strict=True)
    assert CONVERTERS[name](wrap(sd)).keys() == state.keys()
    loaded = model.state_dict()
    expected_dropped = sorted(k for k, (_, t) in layout.items() if t is None)
    assert dropped == expected_dropped
    for key, (_, target) in layout.items():
        if target is not None:
            assert torch.equal(loaded[target], sd[key].to(loaded[target].dtype)), (key, target)
    targets = {t for _, t in layout.values() if t is not None}
    filled = set(loaded) - targets  # only BatchNorm counters absent from the original
    assert all(k.endswith("num_batches_tracked") for k in filled)
    assert all(int(loaded[k]) == 0 for k in filled)
    assert bool(filled) == (name == "byol_resnet50")


@pytest.mark.parametrize("name", NAMES)
def test_builder_returns_documented_feature(name):
    model = model_for(name, fresh=True)
    size = INPUT_SIZES[name]
    with torch.inference_mode():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, DIMS[name]) and model.feature_dim == DIMS[name]
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["nat_m4", "simclrv2_resnet50", "clip_rn50"])
def test_missing_and_unknown_keys_raise(name):
    layout_fn, wrap = LAYOUTS[name]
    sd = materialize(layout_fn())
    victim = next(k for k in sd if k.endswith(".weight") and sd[k].dim() == 4)
    missing = {k: v for k, v in sd.items() if k != victim}
    with pytest.raises(CogError, match=r"1 missing: .*") as err:
        CONVERTERS[name](wrap(missing))
    assert "original checkpoint" in str(err.value)
    extra = {**sd, "projector.layer.weight": torch.ones(3)}
    with pytest.raises(CogError, match=r"1 unexpected: projector\.layer\.weight"):
        CONVERTERS[name](wrap(extra))
    wrong = {**sd, victim: torch.ones(1, 1, 1, 1)}
    with pytest.raises(CogError, match=r"1 with the wrong shape: " + victim.replace(".", r"\.")):
        CONVERTERS[name](wrap(wrong))


def test_t2t_prefers_ema_weights_and_strips_module_prefix():
    lay = t2t_layout()
    raw, ema = materialize(lay, offset=0.0), materialize(lay, offset=0.5)
    ckpt = {"state_dict": {f"module.{k}": v for k, v in raw.items()}, "state_dict_ema": ema}
    state = CONVERTERS["t2t_vit_t_14"](ckpt)
    assert torch.equal(state["blocks.3.attn.qkv.weight"], ema["blocks.3.attn.qkv.weight"])
    state = CONVERTERS["t2t_vit_t_14"]({"state_dict": {f"module.{k}": v for k, v in raw.items()}})
    assert torch.equal(state["norm.weight"], raw["norm.weight"])


def test_non_checkpoints_are_refused():
    with pytest.raises(CogError, match="not a dict of tensors"):
        CONVERTERS["nat_m4"]([1, 2])
    with pytest.raises(CogError, match="'model_state'"):
        CONVERTERS["pycls_effnet_b1"]({"epoch": 3, "optimizer_state": {}})


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pads"),
    [
        (224, 7, 2, (2, 3)),  # ResNet stem: out 112, 5 extra pixels, odd one after
        (112, 3, 2, (0, 1)),  # max pool on an even map
        (113, 3, 2, (1, 1)),  # odd map: symmetric
        (5, 3, 2, (1, 1)),
        (6, 3, 2, (0, 1)),
        (7, 1, 2, (0, 0)),
        (8, 3, 1, (1, 1)),
    ],
)
def test_same_padding_matches_tensorflow(size, kernel, stride, pads):
    # TF: out = ceil(size / stride); total = max((out - 1) * stride + kernel - size, 0)
    assert same_padding(size, kernel, stride) == pads
    conv = SameConv2d(2, 3, kernel, stride, padding=0, bias=False)
    x = torch.randn(1, 2, size, size + 1)
    out = conv(x)
    assert out.shape[-2:] == (math.ceil(size / stride), math.ceil((size + 1) / stride))
    wpad = same_padding(size + 1, kernel, stride)
    ref = F.conv2d(F.pad(x, (*wpad, *pads)), conv.weight, stride=stride)
    assert torch.allclose(out, ref, atol=1e-6)


def test_same_maxpool_pads_after_with_zeros():
    pool = SameMaxPool2d(3, 2)
    x = -torch.arange(36.0).reshape(1, 1, 6, 6) - 1  # all negative: zero padding shows
    out = pool(x)
    assert out.shape == (1, 1, 3, 3)
    assert out[0, 0, -1, -1] == 0 and out[0, 0, 0, 0] == x[0, 0, :3, :3].max()


def test_byol_model_uses_same_padding_everywhere():
    model = model_for("byol_resnet50")
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(isinstance(m, SameConv2d) and m.padding == (0, 0) for m in convs)
    assert isinstance(model.maxpool, SameMaxPool2d) and model.maxpool.padding == 0


# ------------------------------------------------ forward equivalence with the originals
# Functional re-statements of the ORIGINAL forward passes, run on the ORIGINAL keys: the
# converted model must compute the same function, not just hold the same tensors.
def plausible(layout: Layout, seed: int = 0) -> dict[str, torch.Tensor]:
    """He-scaled random weights and near-identity BatchNorms: a deep random net whose output
    still depends on its input (checked by `_check_same_function`)."""
    gen = torch.Generator().manual_seed(seed)
    bns = {k[: -len(".running_var")] for k in layout if k.endswith(".running_var")}
    out = {}
    for key, (shape, _) in layout.items():
        r = torch.randn(shape, generator=gen)
        prefix, _, leaf = key.rpartition(".")
        if leaf == "num_batches_tracked":
            out[key] = torch.tensor(0)
        elif prefix in bns:
            out[key] = {
                "weight": 1 + 0.1 * r,
                "bias": 0.01 * r,
                "running_mean": 0.01 * r,
                "running_var": 1 + 0.1 * r.abs(),
            }[leaf]
        elif len(shape) < 2:
            out[key] = 0.1 * r
        else:
            out[key] = r * (2 / math.prod(shape[1:])) ** 0.5
    return out


def _bnf(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    return F.batch_norm(
        x,
        sd[f"{p}.running_mean"],
        sd[f"{p}.running_var"],
        sd[f"{p}.weight"],
        sd[f"{p}.bias"],
        False,
        0.0,
        1e-5,
    )


def _loaded(name: str, sd: dict, wrap=lambda s: s) -> torch.nn.Module:
    model = copy.deepcopy(model_for(name, fresh=True))
    model.load_state_dict(CONVERTERS[name](wrap(sd)), strict=True)
    return model


def _check_same_function(model, reference, size: int, flip: bool = False) -> None:
    """Equal outputs on two inputs, equal input-dependent parts, and a real dependence."""
    gen = torch.Generator().manual_seed(1)
    x1, x2 = (torch.randn(1, 3, size, size, generator=gen) for _ in "ab")
    with torch.inference_mode():
        m1, m2 = model(x1), model(x2)
        r1, r2 = (reference(x.flip(1) if flip else x) for x in (x1, x2))
    change = (r1 - r2).abs().max()
    assert change > 2e-3 * r1.abs().max()  # the output really depends on the input
    assert (m1 - r1).abs().max() < 1e-4 * r1.abs().max()
    assert ((m1 - m2) - (r1 - r2)).abs().max() < 1e-3 * change


def openai_clip_reference(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """clip/model.py ModifiedResNet + AttentionPool2d, written against the OpenAI keys."""
    for i in (1, 2, 3):
        x = F.relu(
            _bnf(
                F.conv2d(x, sd[f"visual.conv{i}.weight"], stride=2 if i == 1 else 1, padding=1),
                sd,
                f"visual.bn{i}",
            )
        )
    x = F.avg_pool2d(x, 2)
    for s, (_, n, stride) in enumerate(R50_STAGES, 1):
        for j in range(n):
            p, st = f"visual.layer{s}.{j}", stride if j == 0 else 1
            out = F.relu(_bnf(F.conv2d(x, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
            out = F.relu(_bnf(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2"))
            out = F.avg_pool2d(out, st) if st > 1 else out
            out = _bnf(F.conv2d(out, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
            if j == 0:
                idn = F.avg_pool2d(x, st) if st > 1 else x
                x = _bnf(F.conv2d(idn, sd[f"{p}.downsample.0.weight"]), sd, f"{p}.downsample.1")
            x = F.relu(out + x)
    a = "visual.attnpool."
    t = x.flatten(2).permute(2, 0, 1)  # (HW) N C
    t = torch.cat([t.mean(0, keepdim=True), t]) + sd[a + "positional_embedding"][:, None, :]
    out, _ = F.multi_head_attention_forward(
        query=t[:1],
        key=t,
        value=t,
        embed_dim_to_check=t.shape[-1],
        num_heads=32,
        q_proj_weight=sd[a + "q_proj.weight"],
        k_proj_weight=sd[a + "k_proj.weight"],
        v_proj_weight=sd[a + "v_proj.weight"],
        in_proj_weight=None,
        in_proj_bias=torch.cat([sd[a + f"{c}_proj.bias"] for c in "qkv"]),
        bias_k=None,
        bias_v=None,
        add_zero_attn=False,
        dropout_p=0.0,
        out_proj_weight=sd[a + "c_proj.weight"],
        out_proj_bias=sd[a + "c_proj.bias"],
        use_separate_proj_weight=True,
        training=False,
        need_weights=False,
    )
    return out.squeeze(0)


def test_clip_matches_openai_modified_resnet():
    sd = plausible(openai_clip_layout())
    _check_same_function(_loaded("clip_rn50", sd), lambda x: openai_clip_reference(sd, x), 224)


def pycls_reference(sd: dict, x: torch.Tensor, variant: str) -> torch.Tensor:
    """pycls EffNet forward (BGR input), written against the pycls keys."""
    stem, depths, widths, _ = PYCLS[variant]

    def conv(x, key, stride=1, groups=1, bias=False):
        w = sd[f"{key}.weight"]
        b = sd[f"{key}.bias"] if bias else None
        return F.conv2d(x, w, b, stride, (w.shape[-1] - 1) // 2, 1, groups)

    x = F.silu(_bnf(conv(x, "stem.conv", 2), sd, "stem.bn"))
    w_in = stem
    for s, (d, w, e) in enumerate(zip(depths, widths, PYCLS_EXP, strict=True), 1):
        for b in range(1, d + 1):
            p, stride = f"s{s}.b{b}", ((1, 2, 2, 2, 1, 2, 1)[s - 1] if b == 1 else 1)
            f = x
            if int(w_in * e) != w_in:
                f = F.silu(_bnf(conv(f, f"{p}.exp"), sd, f"{p}.exp_bn"))
            f = F.silu(_bnf(conv(f, f"{p}.dwise", stride, f.shape[1]), sd, f"{p}.dwise_bn"))
            g = F.silu(conv(f.mean((2, 3), keepdim=True), f"{p}.se.f_ex.0", bias=True))
            f = f * torch.sigmoid(conv(g, f"{p}.se.f_ex.2", bias=True))
            f = _bnf(conv(f, f"{p}.lin_proj"), sd, f"{p}.lin_proj_bn")
            x = x + f if stride == 1 and w_in == w else f
            w_in = w
    return F.silu(_bnf(conv(x, "head.conv"), sd, "head.conv_bn")).mean((2, 3))


def test_pycls_effnet_matches_pycls_forward_with_bgr_flip():
    sd = plausible(pycls_layout("b1"))
    model = _loaded("pycls_effnet_b1", sd, lambda s: {"model_state": s})
    ref = lambda x: pycls_reference(sd, x, "b1")  # noqa: E731
    _check_same_function(model, ref, 64, flip=True)  # RGB in, pycls saw BGR
    with pytest.raises(AssertionError):
        _check_same_function(model, ref, 64, flip=False)
    model.flip_to_bgr = False  # for preprocessing that already flips
    _check_same_function(model, ref, 64, flip=False)


def separius_reference(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """SimCLRv2-Pytorch ResNet forward (apply_fc=False), written against its keys."""
    x = F.relu(_bnf(F.conv2d(x, sd["net.0.0.weight"], stride=2, padding=3), sd, "net.0.1.0"))
    x = F.max_pool2d(x, 3, 2, 1)
    for s, (_, n, stride) in enumerate(R50_STAGES, 1):
        for j in range(n):
            p, st = f"net.{s}.blocks.{j}", stride if j == 0 else 1
            short = x
            if j == 0:
                short = _bnf(
                    F.conv2d(x, sd[f"{p}.projection.shortcut.weight"], stride=st),
                    sd,
                    f"{p}.projection.bn.0",
                )
            out = F.relu(_bnf(F.conv2d(x, sd[f"{p}.net.0.weight"]), sd, f"{p}.net.1.0"))
            out = F.relu(
                _bnf(
                    F.conv2d(out, sd[f"{p}.net.2.weight"], stride=st, padding=1), sd, f"{p}.net.3.0"
                )
            )
            out = _bnf(F.conv2d(out, sd[f"{p}.net.4.weight"]), sd, f"{p}.net.5.0")
            x = F.relu(short + out)
    return x.mean((2, 3))


def test_simclrv2_matches_separius_forward():
    sd = plausible(separius_layout())
    model = _loaded("simclrv2_resnet50", sd, lambda s: {"resnet": s})
    _check_same_function(model, lambda x: separius_reference(sd, x), 64)


def byol_reference(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """byol-convert forward: explicit TF-SAME zero padding before padding-0 convs/pool."""

    def tf_pad(x, k, s):
        pads = []
        for n in (x.shape[-1], x.shape[-2]):  # F.pad order: width first
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads)

    x = F.relu(_bnf(F.conv2d(tf_pad(x, 7, 2), sd["conv1.weight"], stride=2), sd, "bn1"))
    x = F.max_pool2d(tf_pad(x, 3, 2), 3, 2)
    for s, (_, n, stride) in enumerate(R50_STAGES, 1):
        for j in range(n):
            p, st = f"layer{s}.{j}", stride if j == 0 else 1
            out = F.relu(_bnf(F.conv2d(x, sd[f"{p}.conv1.weight"]), sd, f"{p}.bn1"))
            out = F.relu(
                _bnf(
                    F.conv2d(tf_pad(out, 3, st), sd[f"{p}.conv2.weight"], stride=st), sd, f"{p}.bn2"
                )
            )
            out = _bnf(F.conv2d(out, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
            if j == 0:
                x = _bnf(
                    F.conv2d(tf_pad(x, 1, st), sd[f"{p}.downsample.0.weight"], stride=st),
                    sd,
                    f"{p}.downsample.1",
                )
            x = F.relu(out + x)
    return x.mean((2, 3))


@pytest.mark.parametrize("size", [64])  # even: TF pads the odd pixel after
def test_byol_matches_byol_convert_forward(size):
    sd = plausible(torchvision_r50_layout(tracked=False))
    _check_same_function(_loaded("byol_resnet50", sd), lambda x: byol_reference(sd, x), size)


def _nat_rows() -> list[list[str]]:
    return [r.split() for r in NAT_CONFIG.replace("\n", "|").split("|") if r.strip()]


def nat_reference(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """NATNet.forward of the NAT repo (weight_bn_act layers, mish, hard-sigmoid SE)."""

    def mish(t):
        return t * torch.tanh(F.softplus(t))

    def layer(t, p, stride=1, groups=1, act=True, bn=True):
        w = sd[f"{p}.conv.weight"]
        t = F.conv2d(t, w, None, stride, w.shape[-1] // 2, 1, groups)
        t = _bnf(t, sd, f"{p}.bn") if bn else t
        return mish(t) if act else t

    x = layer(x, "first_conv", 2)
    for i, row in enumerate(_nat_rows()):
        p = f"blocks.{i}.mobile_inverted_conv"
        h = layer(x, f"{p}.inverted_bottleneck") if row[4] != "1" else x
        h = layer(h, f"{p}.depth_conv", int(row[3]), groups=h.shape[1])
        if row[6] == "y":
            se = f"{p}.depth_conv.se.fc"
            g = F.relu(
                F.conv2d(
                    h.mean((2, 3), keepdim=True), sd[f"{se}.reduce.weight"], sd[f"{se}.reduce.bias"]
                )
            )
            h = h * F.relu6(F.conv2d(g, sd[f"{se}.expand.weight"], sd[f"{se}.expand.bias"]) + 3) / 6
        h = layer(h, f"{p}.point_linear", act=False)
        x = x + h if row[7] == "y" else h
    x = layer(x, "final_expand_layer").mean((2, 3), keepdim=True)
    return layer(x, "feature_mix_layer", bn=False).flatten(1)


def test_nat_m4_matches_natnet_forward():
    sd = plausible(nat_layout())
    _check_same_function(_loaded("nat_m4", sd), lambda x: nat_reference(sd, x), 96)


def t2t_reference(sd: dict, x: torch.Tensor) -> torch.Tensor:
    """T2T_ViT.forward_features of the T2T-ViT repo, tokens_type='transformer'."""

    def ln(t, p):
        return F.layer_norm(t, t.shape[-1:], sd[f"{p}.weight"], sd[f"{p}.bias"], 1e-5)

    def lin(t, p):
        return F.linear(t, sd[f"{p}.weight"], sd.get(f"{p}.bias"))

    def mlp(t, p):
        return lin(F.gelu(lin(t, f"{p}.fc1")), f"{p}.fc2")

    def attention(t, p, heads, width, scale):
        b, n, _ = t.shape
        q, k, v = lin(t, f"{p}.qkv").reshape(b, n, 3, heads, width // heads).permute(2, 0, 3, 1, 4)
        out = ((q * scale) @ k.transpose(-2, -1)).softmax(-1) @ v
        return lin(out.transpose(1, 2).reshape(b, n, width), f"{p}.proj"), v

    def token_layer(t, p, dim):  # Token_transformer: residual from v, scale from input width
        out, v = attention(ln(t, f"{p}.norm1"), f"{p}.attn", 1, 64, dim**-0.5)
        t = v.squeeze(1) + out
        return t + mlp(ln(t, f"{p}.norm2"), f"{p}.mlp")

    def fold_split(t, k, s, pad):
        b, n, c = t.shape
        side = int(n**0.5)
        return F.unfold(t.transpose(1, 2).reshape(b, c, side, side), k, 1, pad, s).transpose(1, 2)

    t = F.unfold(x, 7, 1, 2, 4).transpose(1, 2)
    t = token_layer(t, "tokens_to_token.attention1", 147)
    t = token_layer(fold_split(t, 3, 2, 1), "tokens_to_token.attention2", 576)
    t = lin(fold_split(t, 3, 2, 1), "tokens_to_token.project")
    t = torch.cat([sd["cls_token"].expand(t.shape[0], -1, -1), t], 1) + sd["pos_embed"]
    for i in range(14):
        p = f"blocks.{i}"
        t = t + attention(ln(t, f"{p}.norm1"), f"{p}.attn", 6, 384, 64**-0.5)[0]
        t = t + mlp(ln(t, f"{p}.norm2"), f"{p}.mlp")
    return ln(t, "norm")[:, 0]


def test_t2t_vit_matches_original_forward():
    sd = plausible(t2t_layout())
    model = _loaded("t2t_vit_t_14", sd, lambda s: {"state_dict_ema": s})
    _check_same_function(model, lambda x: t2t_reference(sd, x), 224)


def test_natnet_from_released_config_equals_nat_m4():
    def conv_cfg(c_in, c_out, k, s, act="mish"):
        return {
            "name": "ConvLayer",
            "kernel_size": k,
            "stride": s,
            "in_channels": c_in,
            "out_channels": c_out,
            "use_bn": True,
            "act_func": act,
        }

    blocks = []
    for row in _nat_rows():
        c_in, c_out, k, s, e = (int(v) for v in row[:5])
        blocks.append(
            {
                "name": "MobileInvertedResidualBlock",
                "mobile_inverted_conv": {
                    "name": "MBInvertedConvLayer",
                    "in_channels": c_in,
                    "out_channels": c_out,
                    "kernel_size": k,
                    "stride": s,
                    "expand_ratio": e,
                    "mid_channels": None if row[5] == "-" else int(row[5]),
                    "act_func": "mish",
                    "use_se": row[6] == "y",
                },
                "shortcut": {"name": "IdentityLayer", "in_channels": [c_in]}
                if row[7] == "y"
                else None,
            }
        )
    config = {
        "name": "MobileNetV3",
        "bn": {"momentum": 0.1, "eps": 1e-5},
        "first_conv": conv_cfg(3, 24, 3, 2),
        "blocks": blocks,
        "final_expand_layer": conv_cfg(192, 1152, 1, 1),
        "feature_mix_layer": {**conv_cfg(1152, 1536, 1, 1), "use_bn": False},
        "classifier": {"name": "LinearLayer", "in_features": 1536, "out_features": 1000},
    }
    from cog.zoo.archs.nat import natnet_from_config

    with torch.device("meta"):
        built, ref = natnet_from_config(config), ARCHS["nat_m4"]()
    assert {k: v.shape for k, v in built.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()
    }
    with pytest.raises(CogError, match=r"net\.config"):
        natnet_from_config({"blocks": []})


@pytest.mark.slow
def test_clip_fp16_autocast_returns_close_float32_features():
    model = model_for("clip_rn50", fresh=True)
    x = torch.randn(1, 3, 224, 224)
    try:
        with torch.inference_mode():
            full = model(x)
            model.precision = "fp16"
            half = model(x)
    finally:
        model.precision = "fp32"
    assert half.dtype == torch.float32
    assert (half - full).abs().max() < 2e-2 * full.abs().max()
    with pytest.raises(CogError, match="precision"):
        ARCHS["clip_rn50"](precision="bf16")
