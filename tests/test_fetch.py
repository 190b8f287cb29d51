"""cog-models fetch against a loopback HTTP server: good, corrupted, cut and missing files."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from cog import CogError, zoo
from cog.cli.models import main
from cog.features.synthetic import tiny_resnet_card
from cog.zoo.lock import lock_path, read_lock

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB "checkpoint"
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    cut_once: ClassVar[set] = set()
    ranges: ClassVar[list] = []

    def log_message(self, *a):
        pass

    def do_GET(self):
        name = self.path.lstrip("/")
        if name.startswith("missing"):
            self.send_error(404)
            return
        body = bytearray(PAYLOAD)
        if name.startswith("corrupt"):
            body[1000] ^= 0xFF
        start = 0
        rng = self.headers.get("Range")
        if rng:
            Handler.ranges.append((name, rng))
            start = int(rng.split("=")[1].rstrip("-"))
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if name.startswith("cut") and name not in Handler.cut_once:
            Handler.cut_once.add(name)
            self.wfile.write(bytes(body[start : start + 300_000]))
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(bytes(body[start:]))


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    Handler.cut_once.clear()
    Handler.ranges.clear()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("COG_HOME", str(tmp_path / "cog"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for v in ("COG_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(v, raising=False)
    return tmp_path


def card(name: str, url: str, sha: str | None = None) -> dict:
    out = tiny_resnet_card(name, title="fetch test", weights=[{"url": url, "sha256": sha}])
    del out["converter"], out["dropped_keys"]  # fetching never loads the weights
    return out


def ckpt(name: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def test_fetch_good_corrupt_cut_and_missing(server, home, capsys):
    zoo.register_card(card("fetch_good", f"{server}/good.pth", SHA))
    zoo.register_card(card("fetch_nosum", f"{server}/nosum.pth"))
    zoo.register_card(card("fetch_corrupt", f"{server}/corrupt.pth", SHA))
    zoo.register_card(card("fetch_cut", f"{server}/cut.pth", SHA))
    zoo.register_card(card("fetch_missing", f"{server}/missing.pth", SHA))
    code = main(["fetch", "fetch_*", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 2
    assert ckpt("good.pth").read_bytes() == PAYLOAD
    # the cut transfer resumed from the bytes it had, with an HTTP Range request
    assert ckpt("cut.pth").read_bytes() == PAYLOAD
    assert Handler.ranges == [("cut.pth", "bytes=300000-")]
    assert not ckpt("cut.pth.part").exists()
    # corrupted: refused and deleted, never left where load would find it
    assert not ckpt("corrupt.pth").exists()
    assert "fetch_corrupt" in out and "does not match the published sha256" in out
    assert "fetch_missing" in out and "HTTP 404" in out
    assert "3 ok, 2 failed: fetch_corrupt, fetch_missing" in out
    # no published checksum: its sha256 is recorded in the lock file
    lock = read_lock()
    assert [v["sha256"] for v in lock.values() if v["model"] == "fetch_nosum"] == [SHA]
    assert "recorded" in out and lock_path() == home / "cog" / "weights.lock"

    # a second fetch reuses the cache and checks the lock
    assert main(["fetch", "fetch_good", "fetch_nosum", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "cached" in out and "(locked)" in out
    # the locked file changes on disk: fetch and every load refuse it
    ckpt("nosum.pth").write_bytes(PAYLOAD[:-1] + b"x")
    assert main(["fetch", "fetch_nosum", "--no-progress"]) == 2
    assert "weights.lock" in capsys.readouterr().out
    with pytest.raises(CogError, match=r"nosum\.pth: sha256 .* differs .*weights\.lock"):
        zoo.load("fetch_nosum")


@pytest.mark.parametrize("how", ["flag", "HF_HUB_OFFLINE"])
def test_offline_never_touches_the_network(server, home, capsys, monkeypatch, how):
    zoo.register_card(card("fetch_off", f"{server}/good.pth", SHA))
    args = ["fetch", "fetch_off", "--no-progress"]
    if how == "flag":
        args.append("--offline")
    else:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(args) == 2
    out = capsys.readouterr().out
    assert "offline" in out and str(ckpt("good.pth")) in out
    assert not ckpt("good.pth").exists()
    ckpt("good.pth").parent.mkdir(parents=True)
    ckpt("good.pth").write_bytes(PAYLOAD)
    assert main(args) == 0
    assert "cached" in capsys.readouterr().out


def test_fetch_selection_errors(home, capsys):
    assert main(["fetch"]) == 2
    assert "--group G or --all" in capsys.readouterr().err
    assert main(["fetch", "no_such_model_*"]) == 2
    assert "matches no model" in capsys.readouterr().err


def test_broken_lock_file_is_named(home):
    lock_path().parent.mkdir(parents=True)
    lock_path().write_text(json.dumps({"version": 99, "files": {}}))
    with pytest.raises(CogError, match=r"weights\.lock: not a readable weights lock"):
        read_lock()
