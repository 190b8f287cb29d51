"""Reading the authors' level and split pickles without running code from them.

`pickle.load` calls whatever global a file names, so a downloaded `.pkl` can run a shell
command. These files only ever hold lists, dicts, strings, numbers and numpy arrays of
strings, so the unpickler below resolves exactly the globals numpy needs to rebuild arrays,
dtypes and scalars (for every pickle protocol, numpy 1.x and 2.x module names) and refuses
any other global with a CogError naming the file and the global, before it is called.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from cog import CogError

#: (module, name) pairs a data pickle may name: numpy array/dtype/scalar reconstruction
#: (numpy 1.x `numpy.core`, 2.x `numpy._core`), protocol-2 bytes, and plain containers
ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        *(
            (f"numpy.{core}.multiarray", name)
            for core in ("core", "_core")
            for name in ("_reconstruct", "scalar")
        ),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("collections", "OrderedDict"),
    }
)


class _Restricted(pickle.Unpickler):
    def __init__(self, f, path: Path) -> None:
        super().__init__(f)
        self.path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED_GLOBALS:
            raise CogError(
                f"{self.path}: refused to unpickle global {module}.{name}: a cog data pickle "
                "holds only lists, dicts, strings, numbers and numpy arrays, and loading this "
                "one could run code. Do not use this file; download the authors' file again "
                "or rebuild it (cog-build-levels / cog-build-splits)"
            )
        return super().find_class(module, name)


def safe_load(path: str | Path) -> Any:
    """Unpickle `path` allowing only plain containers and numpy arrays (see module doc);
    any failure is a CogError naming the file."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _Restricted(f, path).load()
    except CogError:
        raise
    except OSError as e:
        raise CogError(f"{path}: cannot be read ({e.strerror or e})") from None
    except Exception as e:  # truncated or not a pickle at all
        raise CogError(f"{path}: not a readable pickle ({type(e).__name__}: {e})") from None


def checkpoint_safe_globals() -> list:
    """Globals `torch.load(weights_only=True)` may resolve beyond tensors and containers:
    what released training checkpoints pickle besides weights (argparse options, numpy
    scalars such as a best accuracy, small numpy arrays and their dtypes). Each is data,
    not code: constructing it calls nothing the file chooses. Registered under both numpy
    1.x and 2.x module names so a checkpoint saved with either loads."""
    import argparse

    import numpy as np

    core = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    out: list = [argparse.Namespace, np.dtype, np.ndarray]
    for name in ("scalar", "_reconstruct"):
        fn = getattr(core, name)
        out += [(fn, f"numpy.core.multiarray.{name}"), (fn, f"numpy._core.multiarray.{name}")]
    codes = "?bBhHiIlLqQefdgFDGUS"
    out += sorted({type(np.dtype(c)) for c in codes}, key=lambda t: t.__name__)
    return out
