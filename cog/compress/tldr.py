"""TLDR (Kalantidis et al., TMLR 2022): learned compression of cached backbone features.

`TLDR` learns an encoder whose outputs keep each point's k nearest neighbours close (Barlow
Twins loss on neighbour pairs); a scikit-learn style estimator saved to one file
(`cog.compress.base`). A 128-d or 64-d code is cheap to store and search, and cog already has
every backbone's features cached, so compressing them needs no re-extraction.
"""

from __future__ import annotations

import hashlib
import math
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from cog import CogError
from cog.compress.base import _plain, _Projector
from cog.compress.knn_graph import _cached_graph, _fingerprint, knn_graph
from cog.compress.matrix import load_matrix
from cog.compress.nets import (
    ENCODERS,
    LARS,
    OPTIMIZERS,
    _lr_at,
    _param_groups,
    barlow_twins_loss,
    build_encoder,
    build_projector,
    parse_projector,
)
from cog.device import resolve_device
from cog.estimator import check_number
from cog.io import atomic_write
from cog.protocols.sampling import source_name

# --------------------------------------------------------------------------- TLDR


class TLDR(_Projector):
    """Twin Learning for Dimensionality Reduction.

    Pairs each point with one of its `n_neighbors` nearest neighbours in the input space and
    trains encoder + projector with the Barlow Twins loss; only the encoder is kept. Defaults
    follow the authors' code: linear encoder, projector "mlp-2-2048", LARS (weight decay 1e-6,
    biases and norm weights excluded), lr 0.2 x batch/256 with warm-up then cosine to 0.1%,
    batch 1024, 100 epochs, k = 5. `warmup_epochs=None` means 10% of the epochs (10 of 100).
    Each epoch walks a fresh permutation in full batches (the incomplete last one is left for
    the next permutations to cover). Same random_state and device -> the same projection
    (bitwise on CPU).
    """

    kind = "tldr"

    def __init__(
        self,
        n_components: int = 32,
        n_neighbors: int = 5,
        encoder: str = "linear",
        encoder_hidden: int | Sequence[int] = 512,
        projector: str | Sequence[int] = (2048, 2048, 2048),
        barlow_lambda: float = 0.0039,
        loss_scale: float = 1 / 32,
        optimizer: str = "lars",
        lr: float = 0.2,
        weight_decay: float = 1e-6,
        momentum: float = 0.9,
        epochs: int = 100,
        warmup_epochs: int | None = None,
        final_lr_ratio: float = 0.001,
        batch_size: int = 1024,
        knn: str = "auto",
        knn_metric: str = "euclidean",
        device: str = "auto",
        random_state: int | None = 0,
        verbose: bool = False,
    ):
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.encoder = encoder
        self.encoder_hidden = encoder_hidden
        self.projector = projector
        self.barlow_lambda = barlow_lambda
        self.loss_scale = loss_scale
        self.optimizer = optimizer
        self.lr = lr
        self.weight_decay = weight_decay
        self.momentum = momentum
        self.epochs = epochs
        self.warmup_epochs = warmup_epochs
        self.final_lr_ratio = final_lr_ratio
        self.batch_size = batch_size
        self.knn = knn
        self.knn_metric = knn_metric
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    def _validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise CogError(
                f"optimizer {self.optimizer!r} unknown; choose one of {', '.join(OPTIMIZERS)}"
            )
        if self.encoder not in ENCODERS:
            raise CogError(f"encoder {self.encoder!r} unknown; choose one of {', '.join(ENCODERS)}")
        if int(self.epochs) < 1 or int(self.batch_size) < 2:
            raise CogError(
                f"epochs={self.epochs}, batch_size={self.batch_size}: need epochs >= 1 and "
                "batch_size >= 2"
            )
        check_number(self.lr, "lr", low=0.0, low_open=True)
        check_number(self.weight_decay, "weight_decay", low=0.0)
        parse_projector(self.projector)

    def fit(
        self,
        X: Any,
        y: Any = None,
        *,
        checkpoint: str | Path | None = None,
        knn_cache: str | Path | None = None,
    ) -> TLDR:
        """Learn the encoder on X ([N, D]); y is ignored (unsupervised).

        With `checkpoint`, the kNN graph and the training state are saved there after every
        epoch, and a later fit with the same data and parameters resumes from it. With
        `knn_cache` (a folder), the kNN graph is kept there, keyed by the data and the kNN
        settings, so fits at other dimensions on the same features skip the search.
        """
        self._validate()
        name = source_name(X)
        Xf = load_matrix(X, name, progress=self.verbose)
        n, dim = Xf.shape
        self._check_dims(n, dim, name)
        k = int(self.n_neighbors)
        if k < 1 or n < k + 1:
            raise CogError(
                f"{name}: n_neighbors={k} needs at least {k + 1} points, got {n}; "
                "fit on more points or lower n_neighbors"
            )
        device = resolve_device(self.device)
        seed = 0 if self.random_state is None else int(self.random_state)
        state = self._resume(checkpoint, Xf)
        # seeded init without touching the caller's CPU / CUDA random streams
        with torch.random.fork_rng(devices=range(torch.cuda.device_count())):
            torch.manual_seed(seed)
            enc = build_encoder(self.encoder, dim, int(self.n_components), self.encoder_hidden)
            proj = build_projector(int(self.n_components), parse_projector(self.projector))
        enc, proj = enc.to(device), proj.to(device)
        data = torch.from_numpy(Xf).to(device)
        t_knn = time.perf_counter()
        graph_file = self._knn_file(knn_cache, Xf)
        cached = None if state is not None else _cached_graph(graph_file, n, k)
        if state is not None:
            nbrs = torch.as_tensor(state["neighbors"]).long()
        elif cached is not None:
            nbrs = torch.from_numpy(cached)
        else:
            graph = knn_graph(
                data,
                k,
                metric=self.knn_metric,
                method=self.knn,
                device=device,
                progress=self.verbose,
            )
            if graph_file is not None:
                graph_file.parent.mkdir(parents=True, exist_ok=True)
                with atomic_write(graph_file, "wb") as f:
                    np.save(f, graph.astype(np.int32))
            nbrs = torch.from_numpy(graph)
        nbrs = nbrs.to(device)
        t_knn = time.perf_counter() - t_knn
        t_train = time.perf_counter()
        batch = min(int(self.batch_size), n)
        steps = n // batch
        epochs = int(self.epochs)
        warm = round(0.1 * epochs) if self.warmup_epochs is None else int(self.warmup_epochs)
        peak = float(self.lr) * batch / 256
        opt = self._make_optimizer([enc, proj], peak)
        gen = torch.Generator(device=device).manual_seed(seed)
        history: list[float] = []
        first = 0
        if state is not None:
            enc.load_state_dict(state["encoder"])
            proj.load_state_dict(state["projector"])
            opt.load_state_dict(state["optimizer"])
            gen.set_state(state["generator"])
            history, first = list(state["history"]), int(state["epoch"])
        bar = tqdm(
            range(first, epochs),
            desc="TLDR",
            unit="epoch",
            disable=not self.verbose,
            initial=first,
            total=epochs,
        )
        enc.train()
        proj.train()
        for epoch in bar:
            perm = torch.randperm(n, generator=gen, device=device)
            total = torch.zeros((), device=device)  # summed on device: no sync per step
            for s in range(steps):
                for g in opt.param_groups:
                    g["lr"] = _lr_at(
                        epoch * steps + s,
                        epochs * steps,
                        warm * steps,
                        peak,
                        float(self.final_lr_ratio),
                    )
                idx = perm[s * batch : (s + 1) * batch]
                pick = torch.randint(0, k, (idx.shape[0],), generator=gen, device=device)
                xa = data[idx]
                xb = data[nbrs[idx, pick]]
                za, zb = proj(enc(xa)), proj(enc(xb))
                loss = barlow_twins_loss(za, zb, float(self.barlow_lambda), float(self.loss_scale))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.detach()
            history.append(float(total) / steps)
            if not math.isfinite(history[-1]):
                raise CogError(
                    f"{name}: the TLDR loss diverged at epoch {epoch + 1} (lr={self.lr}); "
                    "lower lr or standardize the features"
                )
            bar.set_postfix(loss=f"{history[-1]:.4f}")
            if checkpoint is not None:
                self._checkpoint(checkpoint, Xf, enc, proj, opt, gen, nbrs, history, epoch + 1)
        self.encoder_ = enc.cpu().eval()
        self.input_dim_ = dim
        self.neighbors_ = nbrs.cpu().numpy()
        self.loss_history_ = history
        self.n_iter_ = len(history)  # epochs trained, resumed ones included
        self.fit_info_ = {
            "n_samples": n,
            "input_dim": dim,
            "steps_per_epoch": steps,
            "batch_size": batch,
            "peak_lr": peak,
            "warmup_epochs": warm,
            "final_loss": history[-1] if history else None,
            "device": str(device),
            "fingerprint": _fingerprint(Xf),
            "knn_s": round(t_knn, 3),
            "train_s": round(time.perf_counter() - t_train, 3),
        }
        return self

    def _make_optimizer(self, modules: list[nn.Module], lr: float) -> torch.optim.Optimizer:
        groups = _param_groups(modules, float(self.weight_decay))
        if self.optimizer == "lars":
            return LARS(groups, lr=lr, momentum=float(self.momentum))
        for g in groups:
            g.pop("exclude")
        if self.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=lr, momentum=float(self.momentum))
        return torch.optim.AdamW(groups, lr=lr)

    def _knn_file(self, folder: str | Path | None, Xf: np.ndarray) -> Path | None:
        if folder is None:
            return None
        key = repr((int(self.n_neighbors), self.knn_metric, self.knn, _fingerprint(Xf)))
        return Path(folder) / f"knn_{hashlib.sha256(key.encode()).hexdigest()[:24]}.npy"

    def _ckpt_key(self, Xf: np.ndarray) -> str:
        params = {k: v for k, v in self.get_params().items() if k != "verbose"}
        return hashlib.sha256(
            (repr(sorted(_plain(params).items())) + _fingerprint(Xf)).encode()
        ).hexdigest()

    def _resume(self, checkpoint: str | Path | None, Xf: np.ndarray) -> dict | None:
        if checkpoint is None or not Path(checkpoint).is_file():
            return None
        try:
            state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        except Exception:
            warnings.warn(f"{checkpoint}: unreadable checkpoint, starting over", stacklevel=3)
            return None
        if state.get("key") != self._ckpt_key(Xf):
            warnings.warn(
                f"{checkpoint}: checkpoint is for other data or parameters, starting over",
                stacklevel=3,
            )
            return None
        return state

    def _checkpoint(self, path, Xf, enc, proj, opt, gen, nbrs, history, epoch) -> None:
        blob = {
            "key": self._ckpt_key(Xf),
            "epoch": epoch,
            "history": history,
            "encoder": enc.state_dict(),
            "projector": proj.state_dict(),
            "optimizer": opt.state_dict(),
            "generator": gen.get_state(),
            "neighbors": nbrs.to(torch.int32).cpu(),
        }
        with atomic_write(path, "wb") as f:
            torch.save(blob, f)

    def _module(self) -> nn.Module:
        import copy

        return copy.deepcopy(self.encoder_).eval()

    def _state(self) -> dict:
        return {
            "encoder": self.encoder_.state_dict(),
            "loss_history": list(getattr(self, "loss_history_", [])),
        }

    def _restore(self, blob: dict) -> None:
        enc = build_encoder(
            self.encoder, self.input_dim_, int(self.n_components), self.encoder_hidden
        )
        enc.load_state_dict(blob["encoder"])
        self.encoder_ = enc.eval()
        self.loss_history_ = blob.get("loss_history", [])
        self.n_iter_ = len(self.loss_history_)
