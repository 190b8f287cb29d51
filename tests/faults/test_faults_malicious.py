"""Malicious files run no code: level and split pickles at every entry point that reads
them, checkpoints through cog.zoo and the CLIs, and card file names that escape their folder."""

from __future__ import annotations

import argparse
import hashlib
import pickle

import numpy as np
import pytest
import torch
from faultlib import Payload, malicious_levels, malicious_splits

from cog import CogError, zoo
from cog.concepts.levels import read_levels
from cog.concepts.splits import read_split_file
from cog.features.synthetic import make_imagenet21k, tiny_resnet_card
from cog.safe_pickle import safe_load


@pytest.fixture
def bad(tmp_path):
    marker = tmp_path / "PWNED"
    return {
        "marker": marker,
        "levels": malicious_levels(tmp_path / "cog_levels_mapping_file.pkl", marker),
        "splits": malicious_splits(tmp_path / "cog_concepts_split_file.pkl", marker),
    }


def test_plain_pickle_would_run_the_payload(bad):
    """The payload is real: an unrestricted load creates the marker."""
    with open(bad["levels"], "rb") as f:
        pickle.load(f)
    assert bad["marker"].exists()


def test_read_levels_and_read_split_file_refuse(bad):
    with pytest.raises(CogError, match=r"cog_levels_mapping_file\.pkl.*posix\.system"):
        read_levels(bad["levels"])
    with pytest.raises(CogError, match=r"cog_concepts_split_file\.pkl.*posix\.system"):
        read_split_file(bad["splits"])
    with pytest.raises(CogError, match=r"refused to unpickle global builtins\.eval"):
        p = bad["levels"].with_name("eval.pkl")
        p.write_bytes(b"cbuiltins\neval\n(S'1'\ntR.")
        safe_load(p)
    assert not bad["marker"].exists()


def test_the_authors_formats_still_load(tmp_path):
    """Lists of wnids and dicts of numpy string/object arrays, every protocol."""
    levels = [["n00000001", "n00000002"], ["n00000003"]]
    split = {
        "n00000001": {
            "train": np.asarray(["n00000001/a.JPEG", "n00000001/b.JPEG"]),
            "test": np.asarray(["n00000001/c.JPEG"], dtype=object),
        }
    }
    for proto in range(2, pickle.HIGHEST_PROTOCOL + 1):
        (tmp_path / "l.pkl").write_bytes(pickle.dumps(levels, protocol=proto))
        (tmp_path / "s.pkl").write_bytes(pickle.dumps(split, protocol=proto))
        assert read_levels(tmp_path / "l.pkl") == levels
        got = read_split_file(tmp_path / "s.pkl")
        assert got["n00000001"]["train"] == ["n00000001/a.JPEG", "n00000001/b.JPEG"]


def _cli(args, tmp_path, monkeypatch):
    """Run a console entry point in this process (its CogError handling included)."""
    import importlib

    monkeypatch.setenv("COG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COG_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    return importlib.import_module(args[0]).main(args[1:])


@pytest.fixture(scope="module")
def root21k(tmp_path_factory):
    return make_imagenet21k(tmp_path_factory.mktemp("in21k"), ["n00000001"], 3)


@pytest.mark.parametrize(
    "module,args,which",
    [
        ("cog.cli.build_splits", ["--imagenet-root", "{root}", "--levels", "{levels}"], "levels"),
        ("cog.cli.build_levels", ["--compare", "{levels}", "--out", "{tmp}/lv"], "levels"),
        (
            "cog.cli.extract",
            [
                "sup_resnet50",
                "--datasets",
                "cog_l1",
                "--imagenet-root",
                "{root}",
                "--levels",
                "{levels}",
                "--random-init",
                "--quiet",
            ],
            "levels",
        ),
        (
            "cog.cli.extract",
            [
                "sup_resnet50",
                "--datasets",
                "cog_l1",
                "--imagenet-root",
                "{root}",
                "--levels",
                "{good}",
                "--splits",
                "{splits}",
                "--random-init",
                "--quiet",
            ],
            "splits",
        ),
        (
            "cog.cli.eval",
            [
                "sup_resnet50",
                "--imagenet-root",
                "{root}",
                "--levels",
                "{levels}",
                "--random-init",
                "--out",
                "{tmp}/res",
            ],
            "levels",
        ),
        (
            "cog.cli.eval",
            [
                "sup_resnet50",
                "--imagenet-root",
                "{root}",
                "--levels",
                "{good}",
                "--splits",
                "{splits}",
                "--random-init",
                "--datasets",
                "cog_l1",
                "--out",
                "{tmp}/res",
                "--device",
                "cpu",
            ],
            "splits",
        ),
    ],
)
def test_every_command_refuses_the_malicious_pickle(
    bad, root21k, tmp_path, monkeypatch, capsys, module, args, which
):
    good = tmp_path / "levels.csv"
    good.write_text("wnid,level\n" + "".join(f"n0000000{k},{k}\n" for k in range(1, 6)))
    fill = dict(root=root21k, levels=bad["levels"], splits=bad["splits"], good=good, tmp=tmp_path)
    status = _cli([module, *[a.format(**fill) for a in args]], tmp_path, monkeypatch)
    err = capsys.readouterr().err
    assert status == 2, err[-2000:]
    assert f"error: {bad[which]}: refused to unpickle global posix.system" in err
    assert not bad["marker"].exists()


# ---------------------------------------------------------------------------- checkpoints


def _tiny_card(name: str = "tiny_faults", **over) -> dict:
    return tiny_resnet_card(name, **over)


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("COG_HOME", str(tmp_path / "cog"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("COG_OFFLINE", "1")
    monkeypatch.delenv("COG_TRUST_CHECKPOINT", raising=False)
    return tmp_path


def _moco_state() -> dict:
    net = zoo.build_arch(zoo.ModelCard.from_dict(_tiny_card()))
    return {f"module.encoder_q.{k}": v for k, v in net.state_dict().items()}


def _evil_checkpoint(path, marker):
    torch.save({"state_dict": _moco_state(), "hook": Payload(marker)}, path)
    return path


def test_malicious_checkpoint_is_refused_everywhere(isolated, capsys):
    marker = isolated / "PWNED"
    ckpt = _evil_checkpoint(isolated / "evil.pth", marker)
    with pytest.raises(CogError, match=r"evil\.pth: refused to unpickle global\(s\) posix\.system"):
        zoo.read_checkpoint(ckpt)
    zoo.register_card(_tiny_card())
    with pytest.raises(CogError, match="--trust-checkpoint"):
        zoo.load("tiny_faults", checkpoint=ckpt)
    from cog.cli.models import main

    assert main(["check", "tiny_faults", "--checkpoint", str(ckpt)]) == 2
    assert "refused to unpickle global(s) posix.system" in capsys.readouterr().err
    assert not marker.exists()


def test_trust_is_explicit_and_recorded(isolated):
    """--trust-checkpoint, or a sha256 pinned in the card, allows full unpickling (so the
    payload of this test runs: that is what trusting a file means), and says so."""
    marker = isolated / "RAN"
    ckpt = _evil_checkpoint(isolated / "trusted.pth", marker)
    zoo.register_card(_tiny_card())
    with pytest.warns(UserWarning, match="--trust-checkpoint"):
        b = zoo.load("tiny_faults", checkpoint=ckpt, trust_checkpoint=True)
    assert b.checkpoint_load == "full unpickling (--trust-checkpoint)" and marker.exists()
    marker.unlink()
    digest = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    zoo.register_card(_tiny_card("tiny_pinned", weights=[{"path": str(ckpt), "sha256": digest}]))
    with pytest.warns(UserWarning, match="sha256 pinned"):
        b = zoo.load("tiny_pinned")
    assert b.checkpoint_load == "full unpickling (sha256 pinned by the card)"
    # a local copy of the pinned file (--checkpoint) is the same bytes, so as trusted
    copy = isolated / "copy" / "trusted.pth"
    copy.parent.mkdir()
    copy.write_bytes(ckpt.read_bytes())
    with pytest.warns(UserWarning, match="sha256 pinned"):
        b = zoo.load("tiny_pinned", checkpoint=copy)
    assert b.checkpoint_load == "full unpickling (sha256 pinned by the card)"
    other = _evil_checkpoint(isolated / "other.pth", isolated / "OTHER")  # other bytes
    with pytest.raises(CogError, match="refused to unpickle"):
        zoo.load("tiny_pinned", checkpoint=other)
    assert not (isolated / "OTHER").exists()


@pytest.mark.parametrize(
    "extras",
    [
        {"opt": argparse.Namespace(lr=0.03, arch="resnet50"), "epoch": 200},  # InfoMin/CompReSS
        {"args": argparse.Namespace(epochs=300), "epoch": 299, "scaler": {}},  # DeiT/DINO full
        {"best_err1": np.float64(21.4), "arch": "resnet50", "epoch": 300},  # CutMix
        {"best_acc1": np.float32(76.1)[()], "epoch": np.int64(90)},  # numpy scalars
        {"cfg": "MODEL:\n  TYPE: effnet\n", "history": np.arange(5.0)},  # pycls, arrays
    ],
)
def test_release_layouts_load_without_full_unpickling(isolated, extras):
    """What real releases pickle besides weights is allow-listed data."""
    path = isolated / "release.pth.tar"
    torch.save({"state_dict": _moco_state(), **extras}, path)
    obj, how = zoo.load_checkpoint(path)
    assert how == "weights_only" and set(extras) <= set(obj)
    zoo.register_card(_tiny_card())
    assert zoo.load("tiny_faults", checkpoint=path).checkpoint_load == "weights_only"


@pytest.mark.parametrize(
    "field,value",
    [
        ("filename", "../../escape.pth"),
        ("filename", "/etc/passwd"),
        ("filename", "sub/dir.pth"),
        ("member", "../outside.pth"),
        ("member", "/abs.pth"),
    ],
)
def test_card_file_names_stay_in_their_folder(field, value):
    src = {"url": "https://example.invalid/a.zip", field: value}
    with pytest.raises(CogError, match=f"{field} {value!r} must be"):
        zoo.WeightSource.from_dict(src, "card.yaml")
    ok = {"url": "https://example.invalid/a.zip", "filename": "a.zip", "member": "run/a.pth"}
    assert zoo.WeightSource.from_dict(ok, "card.yaml").member == "run/a.pth"


def test_how_the_weights_were_read_is_in_the_cache(tmp_path):
    from cog.features.cache import open_features
    from cog.features.extract import extract
    from cog.features.images import image_folder
    from cog.features.synthetic import make_imagenet21k, tiny_backbone

    root = make_imagenet21k(tmp_path / "t", ["n00000001"], 2)
    bb = tiny_backbone()
    bb.checkpoint_load = "full unpickling (--trust-checkpoint)"
    out = extract(
        bb, image_folder(root), tmp_path / "f.h5", workers=0, device="cpu", progress=False
    )
    with open_features(out) as fs:
        assert fs.attrs["checkpoint_load"] == "full unpickling (--trust-checkpoint)"
