"""MoCo-v2 / MoCHi: the mixing, the queue, the momentum encoder, training, resuming, the zoo."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from cog import CogError
from cog.ssl.config import TrainConfig, TrainingInterrupted
from cog.ssl.data import find_images
from cog.ssl.mochi import Mix, MochiParams, MoCo, encode, hard_negative_mix, infonce_logits
from cog.ssl.runtime import load_checkpoint, read_log
from cog.ssl.train import mochi_card, train

ARCH = "test_resnet"  # timm's 0.4M-parameter ResNet: fast on CPU at 32 px
WNIDS = ["n01440764", "n01443537", "n01484850", "n01491361"]


def unit(*shape: int, dim: int = -1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(*shape, generator=g), dim=dim)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run ~10x faster on one thread than on an oversubscribed shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    from cog.features.synthetic import make_imagenet1k

    return make_imagenet1k(tmp_path_factory.mktemp("in1k"), WNIDS, n_train=12, n_val=2)


def config(data: Path, out: Path, **kw) -> TrainConfig:
    settings = dict(
        data=str(data), name="tiny-mochi", out=str(out), arch=ARCH, epochs=4, batch_size=8,
        image_size=32, queue=16, mochi="8,8,4", mochi_warmup=1, lr=0.5, key_momentum=0.99,
        workers=0,
        holdout=8, eval_every=2, log_every=2, eval_size=32,
    )  # fmt: skip
    settings.update(kw)
    return TrainConfig(**settings)


# ----------------------------------------------------------------------------- the mixing


def test_parse_mochi_settings():
    assert MochiParams.parse("512,1024,512") == MochiParams(512, 1024, 512)
    assert MochiParams.parse("(1024, 1024, 128)") == MochiParams(1024, 1024, 128)
    assert MochiParams.parse("off") is None
    for bad in ("512,1024", "a,b,c", "-1,2,3", "1,4,0"):
        with pytest.raises(CogError, match="--mochi"):
            MochiParams.parse(bad)


def test_mix_counts_norms_ranges_and_hardest():
    q, queue = unit(6, 16, seed=1), unit(16, 100, dim=0, seed=2)
    params = MochiParams(10, 20, 7)
    mix = hard_negative_mix(q, queue, params, generator=torch.Generator().manual_seed(0))
    assert mix.points.shape == (6, 27, 16)
    assert torch.allclose(mix.points.norm(dim=-1), torch.ones(6, 27), atol=1e-5)
    # the N hardest are really the N most similar queue keys, hardest first
    sims = q @ queue
    assert mix.hard_idx.shape == (6, 10)
    brute = sims.argsort(dim=1, descending=True)[:, :10]
    assert torch.equal(mix.hard_idx, brute)
    # alpha in [0, 1], beta in [0, 0.5), two distinct negatives per two-negative mix
    assert mix.alpha.shape == (6, 20) and mix.beta.shape == (6, 7)
    assert (mix.alpha >= 0).all() and (mix.alpha <= 1).all()
    assert (mix.beta >= 0).all() and (mix.beta < 0.5).all() and mix.beta.max() > 0.25
    assert (mix.pairs[..., 0] != mix.pairs[..., 1]).all()
    assert (mix.pairs >= 0).all() and (mix.pairs < 10).all() and (mix.partner < 10).all()
    # each point is exactly the normalized mix it claims to be
    keys = queue.t()
    cols = mix.hard_idx.gather(1, mix.pairs.flatten(1)).view(6, 20, 2)
    a = mix.alpha.unsqueeze(-1)
    expect = F.normalize(a * keys[cols[..., 0]] + (1 - a) * keys[cols[..., 1]], dim=-1)
    assert torch.allclose(mix.points[:, :20], expect, atol=1e-6)
    b = mix.beta.unsqueeze(-1)
    partner = keys[mix.hard_idx.gather(1, mix.partner)]
    expect = F.normalize(b * q.unsqueeze(1) + (1 - b) * partner, dim=-1)
    assert torch.allclose(mix.points[:, 20:], expect, atol=1e-6)
    # query mixes stay farther from q than q itself: q.h' < 1
    assert (torch.einsum("bd,bsd->bs", q, mix.points[:, 20:]) < 1 - 1e-4).all()


def test_mix_zero_counts_and_too_large_n():
    q, queue = unit(3, 8), unit(8, 20, dim=0)
    mix = hard_negative_mix(q, queue, MochiParams(5, 0, 3))
    assert mix.points.shape == (3, 3, 8)
    with pytest.raises(CogError, match="larger than the queue"):
        hard_negative_mix(q, queue, MochiParams(21, 4, 4))


def test_no_gradient_into_queue_or_synthetic_points():
    q = unit(4, 16, seed=3).requires_grad_(True)
    k = unit(4, 16, seed=4).requires_grad_(True)
    queue = unit(16, 50, dim=0, seed=5).requires_grad_(True)
    mix = hard_negative_mix(q, queue, MochiParams(8, 6, 6))
    assert not mix.points.requires_grad and mix.points.grad_fn is None
    logits = infonce_logits(q, k, q @ queue.detach(), 0.2, mix.points)
    assert logits.shape == (4, 1 + 50 + 12)
    F.cross_entropy(logits, torch.zeros(4, dtype=torch.long)).backward()
    assert q.grad is not None and q.grad.abs().sum() > 0
    assert k.grad is None and queue.grad is None
    # the gradient into q treats the synthetic points as constants
    q2 = q.detach().clone().requires_grad_(True)
    const = mix.points.clone()
    logits2 = infonce_logits(q2, k.detach(), q2 @ queue.detach(), 0.2, const)
    F.cross_entropy(logits2, torch.zeros(4, dtype=torch.long)).backward()
    assert torch.allclose(q.grad, q2.grad)


def test_dominant_component_of_synthetic_points():
    mix = Mix(
        points=torch.zeros(1, 3, 2),
        hard_idx=torch.tensor([[40, 41, 42]]),
        pairs=torch.tensor([[[0, 1], [2, 0]]]),
        alpha=torch.tensor([[0.7, 0.2]]),
        partner=torch.tensor([[2]]),
        beta=torch.tensor([[0.4]]),
    )
    assert mix.dominant_queue_idx().tolist() == [[40, 40, 42]]


# ----------------------------------------------------------------------------- the model


@pytest.fixture()
def tiny_moco() -> MoCo:
    torch.manual_seed(0)
    return MoCo(arch=ARCH, dim=8, queue_size=10, momentum=0.9, temperature=0.2)


def test_momentum_update(tiny_moco):
    m = tiny_moco
    before_k = [p.detach().clone() for p in m.encoder_k.parameters()]
    with torch.no_grad():
        for p in m.encoder_q.parameters():
            p.add_(1.0)
    now_q = [p.detach().clone() for p in m.encoder_q.parameters()]
    m.momentum_update()
    for pk, k0, q0 in zip(m.encoder_k.parameters(), before_k, now_q, strict=True):
        assert torch.allclose(pk, 0.9 * k0 + 0.1 * q0, atol=1e-6)
        assert not pk.requires_grad


def test_queue_wraps_around(tiny_moco):
    m = tiny_moco
    for i in range(2):
        m.enqueue(unit(4, 8, seed=i), torch.full((4,), i))
    assert int(m.queue_ptr) == 8
    new = unit(4, 8, seed=7)
    m.enqueue(new, torch.full((4,), 7))
    assert int(m.queue_ptr) == 2
    assert torch.equal(m.queue[:, [8, 9, 0, 1]], new.t())
    assert m.queue_labels.tolist() == [7, 7, 0, 0, 1, 1, 1, 1, 7, 7]
    many = unit(25, 8, seed=8)
    m.enqueue(many)  # more keys than K: the newest K survive, in order
    assert int(m.queue_ptr) == 2
    assert torch.equal(m.queue[:, [2, 3, 4, 5, 6, 7, 8, 9, 0, 1]], many[-10:].t())
    assert (m.queue_labels == -1).all()


def test_forward_enqueues_real_keys_only(tiny_moco, monkeypatch):
    import cog.ssl.mochi as mochi_mod

    m = tiny_moco.train()
    seen: list[Mix] = []
    real_mix = mochi_mod.hard_negative_mix
    monkeypatch.setattr(
        mochi_mod, "hard_negative_mix", lambda *a, **k: seen.append(real_mix(*a, **k)) or seen[-1]
    )
    torch.manual_seed(1)
    im_q, im_k = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    labels = torch.tensor([0, 1, 2, 3])
    loss, stats = m(im_q, im_k, labels, mochi=MochiParams(6, 5, 3), analyse=True)
    assert loss.requires_grad and torch.isfinite(loss)
    assert seen and seen[0].points.shape == (4, 8, 8)
    assert int(m.queue_ptr) == 4  # B keys, not B + s + s'
    with torch.no_grad():
        k = F.normalize(encode(m.encoder_k, im_k)[1], dim=1)
    assert torch.allclose(m.queue[:, :4], k.t(), atol=1e-5)
    assert m.queue_labels[:4].tolist() == [0, 1, 2, 3]
    # no synthetic point is in the queue
    pts = seen[0].points.reshape(-1, 8)
    assert torch.cdist(pts, m.queue.t()).min() > 1e-4
    assert set(stats) >= {"acc_top1"}
    # loss backpropagates into the query encoder only
    loss.backward()
    assert all(p.grad is None for p in m.encoder_k.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.encoder_q.parameters())


def test_checkpoint_keys_match_the_architecture(tiny_moco):
    import timm

    from cog.zoo.convert import convert

    ckpt = {"state_dict": {f"module.{k}": v for k, v in tiny_moco.state_dict().items()}}
    sd = convert("moco", ckpt)
    ref = timm.create_model(ARCH, num_classes=0).state_dict()
    assert set(sd) == set(ref)
    assert {"module.queue", "module.queue_ptr", "module.encoder_q.fc.0.weight",
            "module.encoder_q.fc.2.weight"} <= set(ckpt["state_dict"])  # fmt: skip


def test_torchvision_backbone_features_and_head():
    m = MoCo(arch="torchvision:resnet18", dim=16, queue_size=8)
    f, h = encode(m.encoder_q.eval(), torch.randn(2, 3, 32, 32))
    assert f.shape == (2, 512) and h.shape == (2, 16) and m.feature_dim == 512


def test_unknown_arch_names_close_matches():
    with pytest.raises(CogError, match="resnet50"):
        MoCo(arch="resnet5O", queue_size=8)


# ----------------------------------------------------------------------------- training


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    cfg = config(data_root, out, epochs=6)
    final = train(cfg, progress=False)
    return cfg, final


def test_short_cpu_run_trains_logs_and_checkpoints(trained, data_root):
    cfg, final = trained
    out = Path(cfg.out)
    assert final == out / "checkpoint_0006.pth.tar" and final.is_file()
    log = read_log(out / "log.jsonl")
    start = log[0]
    assert start["event"] == "start" and start["n_images"] == 48 and start["n_heldout"] == 8
    epochs = [r for r in log if r["event"] == "epoch"]
    assert [r["epoch"] for r in epochs] == list(range(6))
    assert [r["mixing"] for r in epochs] == [False, True, True, True, True, True]
    # the loss falls while mixing (epoch 0 is easier: the queue starts as random vectors)
    assert epochs[-1]["loss"] < epochs[1]["loss"] - 0.1
    # the lr follows the cosine schedule of lr * batch / 256
    steps = [r for r in log if r["event"] == "step"]
    assert steps[0]["lr"] == pytest.approx(0.5 * 8 / 256)
    assert all(a["lr"] > b["lr"] for a, b in itertools.pairwise(steps))
    assert all(r["images_per_s"] > 0 for r in steps)
    # the oracle needs labelled keys: none on the first step (random initial queue)
    assert steps[0]["fn_top1024"] is None
    assert all(0 <= r["fn_top1024"] <= 1 for r in steps[2:])
    assert all(0 <= r["fn_synthetic"] <= 1 for r in steps if r["mixing"])
    assert not any("fn_synthetic" in r for r in steps if not r["mixing"])
    held = [r["heldout"] for r in epochs if "heldout" in r]
    assert len(held) == 3
    for h in held:
        for part in ("backbone", "head"):
            assert 0 <= h[part]["alignment"] <= 4 and -4 <= h[part]["uniformity"] <= 0
    ckpt = load_checkpoint(final)  # weights_only=True loads it
    assert ckpt["epoch"] == 6 and ckpt["arch"] == f"timm:{ARCH}"
    assert {"optimizer", "rng_states", "scaler", "config"} <= set(ckpt)
    sd = ckpt["state_dict"]
    assert any(k.startswith("module.encoder_k.") for k in sd)
    assert sd["module.queue"].shape == (128, 16) and int(sd["module.queue_ptr"]) == 0
    assert (sd["module.queue_labels"] >= 0).all()


def test_kill_and_resume_equals_uninterrupted(data_root, tmp_path):
    ref = train(config(data_root, tmp_path / "a", epochs=3), progress=False)
    cfg = config(data_root, tmp_path / "b", epochs=3)
    with pytest.raises(TrainingInterrupted):
        train(cfg, progress=False, stop_after_steps=6)  # killed in the middle of epoch 2
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pth.tar")["epoch"] == 1
    with pytest.raises(CogError, match="--resume"):
        train(cfg, progress=False)
    got = train(cfg, resume=True, progress=False)
    a, b = load_checkpoint(ref), load_checkpoint(got)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    for sa, sb in zip(
        a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True
    ):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    log = [r for r in read_log(tmp_path / "b" / "log.jsonl") if r["event"] == "epoch"]
    assert [r["epoch"] for r in log] == [0, 1, 2]
    ref_log = [r for r in read_log(tmp_path / "a" / "log.jsonl") if r["event"] == "epoch"]
    assert [r["loss"] for r in log] == [r["loss"] for r in ref_log]


@pytest.mark.slow
def test_torchrun_two_cpu_processes(data_root, tmp_path):
    """DDP over gloo with shuffled BN: the queue gathers both processes' keys."""
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "cog.cli.train_mochi", "--in1k-root", str(data_root), "--name", "ddp", "--arch", ARCH,
        "--epochs", "1", "--batch-size", "8", "--image-size", "32", "--queue", "48",
        "--mochi", "8,4,4", "--mochi-warmup", "0", "--workers", "0", "--holdout", "8",
        "--eval-size", "32", "--out", str(out), "--quiet", "--no-register",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COG_HOME": str(tmp_path / "home")}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    ckpt = load_checkpoint(out / "checkpoint_0001.pth.tar")
    assert len(ckpt["rng_states"]) == 2  # every process's RNG streams, for exact resumption
    sd = ckpt["state_dict"]
    # 40 images, 2 x 4 per step: 5 steps of 8 gathered keys, all labelled
    assert int(sd["module.queue_ptr"]) == 40
    assert (sd["module.queue_labels"][:40] >= 0).all() and (
        sd["module.queue_labels"][40:] == -1
    ).all()
    assert not any("ddp" in p.name for p in (tmp_path / "home").rglob("*.yaml"))


def test_resume_refuses_changed_architecture(data_root, tmp_path):
    cfg = config(data_root, tmp_path / "r", epochs=1, holdout=0)
    train(cfg, progress=False)
    cfg2 = config(data_root, tmp_path / "r", epochs=2, holdout=0, queue=64)
    with pytest.raises(CogError, match="queue"):
        train(cfg2, resume=True, progress=False)


def test_bad_data_is_named(tmp_path):
    with pytest.raises(CogError, match="no such folder"):
        find_images(tmp_path / "missing")
    (tmp_path / "d" / "cls").mkdir(parents=True)
    with pytest.raises(CogError, match="cls/ holds no image"):
        find_images(tmp_path / "d")
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "x.jpg").write_bytes(b"not a jpeg")
    imgs = find_images(flat)
    assert imgs.paths == ["x.jpg"] and imgs.labels.tolist() == [-1]
    from cog.ssl.data import load_rgb

    with pytest.raises(CogError, match=r"x\.jpg: cannot decode"):
        load_rgb(flat / "x.jpg")


def test_undecodable_image_stops_training_with_its_path(tmp_path):
    from PIL import Image

    for c in ("a", "b"):
        (tmp_path / "d" / c).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (40, 40), (60 * i, 90, 30)).save(tmp_path / "d" / c / f"{i}.jpg")
    (tmp_path / "d" / "b" / "3.jpg").write_bytes(b"\xff\xd8 truncated")
    cfg = config(tmp_path / "d", tmp_path / "out", epochs=1, holdout=0, workers=1, mochi="off")
    with pytest.raises(CogError) as err:
        train(cfg, progress=False)
    assert str(err.value).startswith(f"{tmp_path / 'd' / 'b' / '3.jpg'}: cannot decode")
    assert "Traceback" not in str(err.value)


# ----------------------------------------------------------------------------- zoo and CLI


def _zoo():
    try:
        from cog import zoo
    except ImportError:
        pytest.skip("cog.zoo is not in this checkout yet")
    return zoo


def test_checkpoint_to_card_to_zoo_features(trained, tmp_path, monkeypatch):
    zoo = _zoo()
    monkeypatch.setenv("COG_HOME", str(tmp_path / "home"))
    cfg, final = trained
    card = mochi_card(cfg, final)
    assert card["group"] == "local" and card["converter"] == "moco"
    assert card["training"]["mochi"] == "8,8,4" and card["feature_dim"] == 96
    path = zoo.register_card(card)
    assert path.is_file() and path.parent == tmp_path / "home" / "models"
    from cog.ssl.train import resolve_arch

    assert resolve_arch(cfg.name) == f"timm:{ARCH}"  # --arch NAME: that model's architecture
    backbone = zoo.load(cfg.name)
    assert backbone.feature_dim == 96 and backbone.weights_sha256 == card["checkpoint"]["sha256"]
    from PIL import Image

    img = Image.open(next((Path(cfg.data) / "val").rglob("*.JPEG"))).convert("RGB")
    x = backbone.transform(img).unsqueeze(0)
    model = MoCo(arch=ARCH, dim=128, queue_size=16)
    sd = load_checkpoint(final)["state_dict"]
    model.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()})
    with torch.no_grad():
        ref = encode(model.encoder_q.eval(), x)[0]
        got = backbone.eval()(x)
    assert torch.allclose(got, ref, atol=1e-5)


def test_torchvision_checkpoint_to_card_to_zoo_features(data_root, tmp_path, monkeypatch):
    """A torchvision encoder's card drops its classifier (the converter drops `fc.*`)."""
    zoo = _zoo()
    monkeypatch.setenv("COG_HOME", str(tmp_path / "home"))
    from cog.ssl.train import _checkpoint

    cfg = config(data_root, tmp_path / "tv", name="tv-mochi", arch="torchvision:resnet18")
    torch.manual_seed(0)
    model = MoCo(arch="torchvision:resnet18", dim=16, queue_size=16)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    path = tmp_path / "tv.pth.tar"
    torch.save(_checkpoint(cfg, model, opt, scaler, 1, []), path)
    card = mochi_card(cfg, path)
    assert card["arch"]["identity"] == ["fc"]
    zoo.register_card(card)
    backbone = zoo.load("tv-mochi")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = encode(model.encoder_q.eval(), x)[0]
        got = backbone.eval()(x)
    assert backbone.feature_dim == 512 and torch.allclose(got, ref, atol=1e-5)


def test_shipped_model_names_are_refused_before_training(data_root, tmp_path, monkeypatch):
    _zoo()
    from cog.cli.train_mochi import _check_name_free

    monkeypatch.setenv("COG_HOME", str(tmp_path / "home"))
    cfg = config(data_root, tmp_path / "o", name="sup_resnet50")
    for overwrite in (False, True):
        with pytest.raises(CogError, match="sup_resnet50"):
            _check_name_free(cfg, overwrite)
    _check_name_free(config(data_root, tmp_path / "o", name="brand-new"), False)


def test_cli_trains_registers_and_cog_eval_runs(data_root, tmp_path, monkeypatch):
    zoo = _zoo()
    from cog.cli.train_mochi import main

    monkeypatch.setenv("COG_HOME", str(tmp_path / "home"))
    out = tmp_path / "cli"
    args = [
        "--in1k-root", str(data_root), "--name", "cli-mochi", "--arch", ARCH, "--epochs", "1",
        "--batch-size", "8", "--image-size", "32", "--queue", "16", "--mochi", "8,4,4",
        "--mochi-warmup", "0", "--workers", "0", "--holdout", "0", "--eval-size", "32",
        "--out", str(out), "--quiet",
    ]  # fmt: skip
    assert main([*args, "--mochi", "bad"]) == 2
    assert main(args) == 0
    assert "cli-mochi" in zoo.list_models("local")
    assert main(args) == 2  # the run exists: --resume needed
    assert main([*args, "--resume"]) == 0  # nothing left to train: re-registers
    try:
        from cog.cli.eval import main as eval_main
    except ImportError:
        pytest.skip("cog-eval is not in this checkout yet")
    res = tmp_path / "results"
    eval_args = ["cli-mochi", "--in1k-root", str(data_root), "--datasets", "in1k", "--seeds",
                 "22", "--out", str(res), "--cache-dir", str(tmp_path / "cache"),
                 "--quiet", "--workers", "0", "--device", "cpu"]  # fmt: skip
    assert eval_main(eval_args) == 0
    board = (res / "leaderboard.csv").read_text()
    assert "cli-mochi" in board and "random-init" not in board
    runs = list((res / "runs" / "cli-mochi").glob("*.json"))
    assert runs
    card = zoo.get_card("cli-mochi")
    sha = card.weights[0].sha256
    assert sha in "".join(r.read_text() for r in runs)  # evaluated the trained weights
