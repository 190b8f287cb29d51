"""`cog-models fetch`: put every weight file a card needs into the cache before a run.

A dead link should be found in the first minute, not hours into an evaluation. Files are
downloaded into the caches `cog.zoo.load` reads (torch hub's checkpoint folder for URLs, the
Hugging Face cache for hub repos) with a progress bar; a broken transfer resumes from the
bytes already on disk (HTTP Range on `<file>.part`); the published checksum (the card's
sha256 or torch hub's file-name prefix) is verified; a file without one has its sha256
recorded in `$COG_HOME/weights.lock`, which every later load checks (`check_lock`), so a file
that changes under the same name is caught. Offline (`--offline`, `COG_OFFLINE=1` or
`HF_HUB_OFFLINE=1`) nothing touches the network and the missing file is named.
"""

from __future__ import annotations

import contextlib
import http.client
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from cog import CogError
from cog.io import sha256_file
from cog.zoo.lock import check_lock, record_lock

CHUNK = 1 << 20
RETRIES = 3  # resumed attempts after a transfer is cut


@dataclass
class Fetched:
    """What `fetch_model` did for one model: the file, its sha256 and how it was checked."""

    model: str
    path: Path | None
    sha256: str | None
    status: str  # downloaded, cached, failed
    check: str = ""  # "sha256", "sha256 prefix", "hub blob", "locked", "recorded"
    error: str = ""


# ---------------------------------------------------------------- HTTP with resume


def download(url: str, target: Path, *, progress: bool = True, retries: int = RETRIES) -> Path:
    """Download `url` to `target` through `<target>.part`, resuming with HTTP Range after a
    cut transfer; the part file is renamed only once every announced byte has arrived."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    last = ""
    for _attempt in range(retries + 1):
        have = part.stat().st_size if part.is_file() else 0
        req = urllib.request.Request(url, headers={"User-Agent": "cog-models-fetch"})
        if have:
            req.add_header("Range", f"bytes={have}-")
        try:
            resp = urllib.request.urlopen(req, timeout=60)
        except urllib.error.HTTPError as e:
            if e.code == 416 and have:  # the part file already holds everything
                part.replace(target)
                return target
            raise CogError(f"{url}: HTTP {e.code} {e.reason}; the link is dead or moved") from None
        except (urllib.error.URLError, OSError) as e:
            raise CogError(f"{url}: cannot connect ({e}); check the URL or the network") from None
        with resp:
            if have and resp.status != 206:  # the server ignored Range: start over
                have = 0
            length = resp.headers.get("Content-Length")
            total = have + int(length) if length is not None else None
            got = have
            with (
                open(part, "ab" if have else "wb") as f,
                tqdm(
                    total=total,
                    initial=have,
                    unit="B",
                    unit_scale=True,
                    desc=target.name,
                    disable=not progress,
                    leave=False,
                ) as bar,
                contextlib.suppress(OSError, http.client.HTTPException),
            ):  # a cut: resume below
                while block := resp.read(CHUNK):
                    f.write(block)
                    got += len(block)
                    bar.update(len(block))
        if total is None or got == total:
            part.replace(target)
            return target
        last = f"got {got} of {total} bytes"
        time.sleep(0.2)
    raise CogError(
        f"{url}: transfer cut {retries + 1} times ({last}); the partial file {part} is kept "
        "and the next `cog-models fetch` resumes it"
    )


# ---------------------------------------------------------------- one model


def _offline(flag: bool) -> bool:
    from cog.zoo.weights import offline

    return flag or offline()


def _verify(path: Path, source, model: str) -> tuple[str, str]:
    """sha256 of a fetched file and how it was checked; a mismatch deletes the file."""
    digest = sha256_file(path)
    expected = source.sha256 or source.hash_prefix
    if expected:
        if not digest.startswith(expected):
            path.unlink(missing_ok=True)
            raise CogError(
                f"{path}: sha256 {digest} does not match the published "
                f"{'sha256' if source.sha256 else 'prefix'} {expected} of {model!r}; the "
                "corrupt file was deleted, run `cog-models fetch` again (or report the link)"
            )
        return digest, "sha256" if source.sha256 else "sha256 prefix"
    if check_lock(path, source, model, digest):
        return digest, "locked"
    record_lock(source, model, digest)
    return digest, "recorded"


def _fetch_source(source, model: str, offline: bool, progress: bool) -> tuple[Path, str]:
    """The file of one source in the cache (downloaded if needed); (path, 'cached'|...)."""
    from cog.zoo import weights as zoo

    hit = zoo._cached(source)
    if hit is not None:
        return hit, "cached"
    if source.kind in ("manual", "path", "package"):  # nothing to download: say how to get it
        raise CogError(f"{source.describe()}: not found; {zoo._where_to_put(source)}")
    if offline:
        where = (
            f"{source.location} in the Hugging Face cache"
            if source.kind == "hub"
            else str(zoo.checkpoint_dir() / str(source.filename))
        )
        raise CogError(
            f"offline: {model!r} needs {where}, which is missing; run `cog-models fetch "
            f"{model}` where the network is reachable, or {zoo._where_to_put(source)}"
        )
    if source.kind == "hub":
        try:
            return zoo._hub_download(source), "downloaded"
        except OSError as e:
            raise CogError(f"{source.describe()}: download failed ({e})") from None
    archive = download(
        str(source.location), zoo.checkpoint_dir() / str(source.filename), progress=progress
    )
    if source.member:  # the card's checksum is the member's: checked after unpacking
        return zoo._unpack_member(source, archive), "downloaded"
    return archive, "downloaded"


def fetch_model(name: str, *, offline: bool = False, progress: bool = True) -> list[Fetched]:
    """Fetch and verify the weights of one model (and of its base, for composite cards).

    The card's sources are alternatives: the first one cached, else the first one that
    downloads and verifies, is the model's file. Failures are returned, not raised."""
    from cog.zoo import registry, weights

    card = registry.get_card(name)
    if card.base is not None:  # a base model plus a local projection (cog-tldr)
        out = fetch_model(card.base, offline=offline, progress=progress)
        pr = card.projection
        try:
            path, digest = weights.projection_file(card.name, card.source_file, pr.path, pr.sha256)
            out.append(Fetched(card.name, path, digest, "cached", "projection sha256"))
        except CogError as e:
            out.append(Fetched(card.name, None, None, "failed", error=str(e)))
        return out
    errors = []
    for source in card.weights:
        try:
            path, status = _fetch_source(source, card.name, _offline(offline), progress)
            digest, how = _verify(path, source, card.name)
        except CogError as e:
            errors.append(str(e))
            continue
        return [Fetched(card.name, path, digest, status, how)]
    return [Fetched(card.name, None, None, "failed", error="; ".join(errors) or "no sources")]


def fetch(names: list[str], *, offline: bool = False, progress: bool = True) -> list[Fetched]:
    """`fetch_model` for each name, going on past failures."""
    out: list[Fetched] = []
    for name in tqdm(names, desc="cog-models fetch", unit="model", disable=not progress):
        try:
            out.extend(fetch_model(name, offline=offline, progress=progress))
        except CogError as e:
            out.append(Fetched(name, None, None, "failed", error=str(e)))
    return out
