"""MoCo-v2 with MoCHi hard negative mixing: the model, the mixing, the key queue and the loss.

MoCHi (Kalantidis et al., NeurIPS 2020) makes the contrastive task harder by adding, for every
query, synthetic negatives mixed from its hardest queue negatives (and from the query itself).
The training loop, data and checkpoints live in `cog.ssl.train`; this module holds what a step
computes, so that it can be tested on tensors alone.
"""

from __future__ import annotations

import copy
import difflib
from dataclasses import dataclass

import numpy as np
import timm
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from cog import CogError

FALSE_NEGATIVE_TOP = 1024  # the paper's oracle analysis looks at the 1024 hardest negatives


@dataclass(frozen=True)
class MochiParams:
    """MoCHi(N, s, s'): N hardest negatives, s mixes of two of them, s' mixes with the query."""

    n_hard: int
    n_synth: int
    n_query_mix: int

    @classmethod
    def parse(cls, text: str) -> MochiParams | None:
        """Parse "N,s,s'" (e.g. "512,1024,512"); "off" means plain MoCo-v2 (None)."""
        if text.strip().lower() in ("off", "none", "0"):
            return None
        parts = [p.strip() for p in text.replace("(", "").replace(")", "").split(",")]
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 3 or min(values) < 0:
            raise CogError(
                f"--mochi {text!r}: expected three non-negative integers N,s,s' "
                "(e.g. --mochi 512,1024,512) or --mochi off"
            )
        params = cls(*values)
        if params.n_synth and params.n_hard < 2:
            raise CogError(f"--mochi {text!r}: mixing two hard negatives needs N >= 2")
        if (params.n_synth or params.n_query_mix) and params.n_hard < 1:
            raise CogError(f"--mochi {text!r}: N must be at least 1 when s or s' is positive")
        return params

    def __str__(self) -> str:
        return f"{self.n_hard},{self.n_synth},{self.n_query_mix}"


@dataclass
class Mix:
    """Synthetic negatives for a batch of queries, with what they were made of (for analysis).

    `points` are unit-norm and detached: first the s two-negative mixes, then the s' query
    mixes. Indices in `pairs` and `partner` are positions in `hard_idx` (0 = hardest).
    """

    points: Tensor  # [B, s + s', D]
    hard_idx: Tensor  # [B, N] queue columns, hardest first
    pairs: Tensor  # [B, s, 2]
    alpha: Tensor  # [B, s]
    partner: Tensor  # [B, s']
    beta: Tensor  # [B, s']

    def dominant_queue_idx(self) -> Tensor:
        """Queue column of the component with the larger weight in each synthetic point.

        For the query mixes beta < 0.5, so the negative always dominates; this is what the
        false-negative oracle compares against the query's label.
        """
        first = torch.where(self.alpha >= 0.5, self.pairs[..., 0], self.pairs[..., 1])
        pos = torch.cat([first, self.partner], dim=1)
        return self.hard_idx.gather(1, pos)


def hard_negative_mix(
    q: Tensor,
    queue: Tensor,
    params: MochiParams,
    *,
    neg_logits: Tensor | None = None,
    generator: torch.Generator | None = None,
) -> Mix:
    """MoCHi(N, s, s') synthetic negatives for unit-norm queries `q` [B, D].

    `queue` is [D, K] (the public MoCo layout) of unit-norm keys. The N hardest negatives of
    each query are those of highest q.n (`neg_logits`, if given, must be q @ queue up to a
    positive scale). Mixes: h = a n_i + (1 - a) n_j, a ~ U(0, 1), i != j; and
    h' = b q + (1 - b) n_j, b ~ U(0, 0.5); both L2-normalized. Everything is computed from
    detached features: no gradient flows into the synthetic points.
    """
    q = q.detach().float()
    keys = queue.detach().float().t()  # [K, D]
    batch, k = q.shape[0], keys.shape[0]
    n = params.n_hard
    if n > k:
        raise CogError(f"MoCHi N={n} is larger than the queue (K={k}); lower N or raise --queue")
    sims = (q @ keys.t()) if neg_logits is None else neg_logits.detach()
    hard_idx = sims.topk(n, dim=1).indices  # sorted, hardest first
    dev = q.device
    s, s2 = params.n_synth, params.n_query_mix

    def rand_int(low: int, high: int, shape: tuple[int, ...]) -> Tensor:
        return torch.randint(low, high, shape, generator=generator, device=dev)

    def rand(shape: tuple[int, ...]) -> Tensor:
        return torch.rand(shape, generator=generator, device=dev)

    first = rand_int(0, n, (batch, s))
    second = (first + rand_int(1, max(n, 2), (batch, s))) % n  # uniform over j != i
    pairs = torch.stack([first, second], dim=-1)
    alpha = rand((batch, s))
    n_i = keys[hard_idx.gather(1, first)]
    n_j = keys[hard_idx.gather(1, second)]
    mixed = alpha.unsqueeze(-1) * n_i + (1 - alpha.unsqueeze(-1)) * n_j

    partner = rand_int(0, n, (batch, s2))
    beta = 0.5 * rand((batch, s2))
    n_p = keys[hard_idx.gather(1, partner)]
    harder = beta.unsqueeze(-1) * q.unsqueeze(1) + (1 - beta.unsqueeze(-1)) * n_p

    points = F.normalize(torch.cat([mixed, harder], dim=1), dim=-1)
    return Mix(points, hard_idx, pairs, alpha, partner, beta)


def infonce_logits(
    q: Tensor, k: Tensor, neg: Tensor, temperature: float, synthetic: Tensor | None = None
) -> Tensor:
    """[B, 1 + K (+ s + s')] logits: the positive q.k first, then `neg` = q @ queue, then q.h
    for the synthetic points. The loss is cross-entropy with target 0; k, the queue and the
    synthetic points are constants."""
    parts = [(q * k.detach()).sum(dim=1, keepdim=True), neg]
    if synthetic is not None:
        parts.append(torch.einsum("bd,bsd->bs", q, synthetic.detach()))
    return torch.cat(parts, dim=1) / temperature


def concat_all_gather(t: Tensor) -> Tensor:
    """Concatenate a tensor from every process (rank order), without gradient."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return t.detach()
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.detach().contiguous())
    return torch.cat(out, dim=0)


# ---------------------------------------------------------------------------------------------
# encoders


def parse_arch(arch: str) -> tuple[str, str]:
    """("timm" | "torchvision", model name) for "timm:NAME", "torchvision:NAME", "timm/NAME"
    or a bare timm name. Zoo model names are resolved by the caller (`cog.ssl.train`)."""
    for sep in (":", "/"):
        lib, _, name = arch.partition(sep)
        if name and lib in ("timm", "torchvision"):
            return lib, name
    return "timm", arch


def _check_arch(lib: str, name: str) -> None:
    if lib == "timm":
        if timm.is_model(name):
            return
        close = difflib.get_close_matches(name, timm.list_models(), n=5)
    else:
        import torchvision

        names = torchvision.models.list_models()
        if name in names:
            return
        close = difflib.get_close_matches(name, names, n=5)
    hint = f"; close matches: {', '.join(close)}" if close else ""
    raise CogError(f"--arch {lib}:{name}: no such {lib} architecture{hint}")


def build_encoder(arch: str, dim: int = 128, mlp_dim: int | None = None) -> nn.Module:
    """A randomly initialised backbone whose `fc` is the MoCo-v2 head (Linear-ReLU-Linear).

    The head sits under `fc` as in the public MoCo-v2 checkpoints (`fc.0`, `fc.2`), so that
    the backbone weights are exactly the `encoder_q.*` keys minus `fc`, named as timm /
    torchvision name them. timm models are used without classifier (num_classes=0);
    torchvision models must have their classifier under `fc` (ResNets, RegNets, ...).
    """
    lib, name = parse_arch(arch)
    _check_arch(lib, name)
    if lib == "timm":
        model = timm.create_model(name, pretrained=False, num_classes=0)
        feat_dim = int(model.num_features)
    else:
        import torchvision

        model = torchvision.models.get_model(name, weights=None)
        if not isinstance(getattr(model, "fc", None), nn.Linear):
            raise CogError(
                f"--arch torchvision:{name}: its classifier is not an `fc` layer, which the "
                "MoCo checkpoint layout needs; use the timm version (--arch timm:NAME)"
            )
        feat_dim = model.fc.in_features
    hidden = mlp_dim or feat_dim
    model.fc = nn.Sequential(
        nn.Linear(feat_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim)
    )
    model.cog_feature_dim = feat_dim
    return model


def encode(encoder: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """(backbone features [B, F], head output [B, dim]) of an encoder from `build_encoder`."""
    if hasattr(encoder, "forward_head"):  # timm: pooled pre-logits features, then our head
        feats = encoder.forward_head(encoder.forward_features(x), pre_logits=True)
        return feats, encoder.fc(feats)
    seen: list[Tensor] = []
    hook = encoder.fc.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    try:
        out = encoder(x)
    finally:
        hook.remove()
    return seen[0], out


# ---------------------------------------------------------------------------------------------
# the model


class MoCo(nn.Module):
    """MoCo-v2 (query encoder, momentum key encoder, key queue) with optional MoCHi mixing.

    Buffers follow the public layout: `queue` [dim, K] of unit-norm keys, `queue_ptr` [1];
    `queue_labels` [K] holds the class of each key (-1 unknown) for the false-negative oracle.
    `shuffle_bn` shuffles the key batch across processes so BatchNorm cannot leak the positive.
    """

    def __init__(
        self,
        arch: str = "resnet50",
        dim: int = 128,
        mlp_dim: int | None = None,
        queue_size: int = 65536,
        momentum: float = 0.999,
        temperature: float = 0.2,
        shuffle_bn: bool = True,
    ) -> None:
        super().__init__()
        if queue_size < 1:
            raise CogError(f"--queue {queue_size}: the queue needs at least one key")
        self.arch, self.dim, self.queue_size = arch, dim, queue_size
        self.momentum, self.temperature, self.shuffle_bn = momentum, temperature, shuffle_bn
        self.encoder_q = build_encoder(arch, dim, mlp_dim)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.register_buffer("queue_labels", torch.full((queue_size,), -1, dtype=torch.long))

    @property
    def feature_dim(self) -> int:
        return int(self.encoder_q.cog_feature_dim)

    @torch.no_grad()
    def momentum_update(self) -> None:
        """theta_k <- m theta_k + (1 - m) theta_q (parameters only; BN statistics are k's own)."""
        for pq, pk in zip(self.encoder_q.parameters(), self.encoder_k.parameters(), strict=True):
            pk.mul_(self.momentum).add_(pq.detach(), alpha=1.0 - self.momentum)

    @torch.no_grad()
    def enqueue(self, keys: Tensor, labels: Tensor | None = None) -> None:
        """Push keys [n, dim] (already gathered from all processes) FIFO, wrapping around."""
        n = keys.shape[0]
        if labels is None:
            labels = torch.full((n,), -1, dtype=torch.long, device=keys.device)
        if n > self.queue_size:  # only the newest K survive
            keys, labels, n = keys[-self.queue_size :], labels[-self.queue_size :], self.queue_size
        ptr = int(self.queue_ptr.item())
        idx = (ptr + torch.arange(n, device=self.queue.device)) % self.queue_size
        self.queue[:, idx] = keys.t().to(self.queue.dtype)
        self.queue_labels[idx] = labels.to(self.queue_labels.device)
        self.queue_ptr[0] = (ptr + n) % self.queue_size

    @torch.no_grad()
    def _keys(self, im_k: Tensor) -> Tensor:
        distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        if not (self.shuffle_bn and distributed):
            return F.normalize(encode(self.encoder_k, im_k)[1].float(), dim=1)
        # shuffled BN: every process encodes a random slice of the global batch
        local = im_k.shape[0]
        gathered = concat_all_gather(im_k)
        perm = torch.randperm(gathered.shape[0], device=im_k.device)
        dist.broadcast(perm, src=0)
        rank = dist.get_rank()
        mine = perm[rank * local : (rank + 1) * local]
        k = F.normalize(encode(self.encoder_k, gathered[mine])[1].float(), dim=1)
        all_k = concat_all_gather(k)
        unshuffled = torch.empty_like(all_k)
        unshuffled[perm] = all_k
        return unshuffled[rank * local : (rank + 1) * local]

    def forward(
        self,
        im_q: Tensor,
        im_k: Tensor,
        labels: Tensor | None = None,
        mochi: MochiParams | None = None,
        analyse: bool = False,
    ) -> tuple[Tensor, dict[str, float]]:
        """One MoCo step: loss (and, with `analyse`, oracle statistics); updates k and the queue.

        The momentum update and the enqueue happen here, as in the public implementation, so
        that a DDP-wrapped model does one step per forward. Only the real keys are enqueued.
        """
        q = F.normalize(encode(self.encoder_q, im_q)[1].float(), dim=1)
        with torch.no_grad():
            self.momentum_update()
            k = self._keys(im_k)
        queue = self.queue.clone().detach()  # the enqueue below must not alter saved tensors
        # similarities, the top-N selection and the loss in float32, also under autocast:
        # bf16 logits at tau = 0.2 would tie many of the hardest negatives
        with torch.autocast(q.device.type, enabled=False):
            neg = q @ queue
            mix = None
            if mochi is not None and (mochi.n_synth or mochi.n_query_mix):
                mix = hard_negative_mix(q, queue, mochi, neg_logits=neg)
            synthetic = mix.points if mix is not None else None
            logits = infonce_logits(q, k, neg, self.temperature, synthetic)
            target = torch.zeros(q.shape[0], dtype=torch.long, device=q.device)
            loss = F.cross_entropy(logits, target)
        stats: dict[str, float] = {}
        if analyse:
            stats = self._oracle(q, logits, neg, labels, mix)
        gathered_labels = concat_all_gather(labels) if labels is not None else None
        self.enqueue(concat_all_gather(k), gathered_labels)
        return loss, stats

    @torch.no_grad()
    def _oracle(
        self, q: Tensor, logits: Tensor, neg: Tensor, labels: Tensor | None, mix: Mix | None
    ) -> dict[str, float]:
        """Positive-pair accuracy and, with labels, the false-negative shares of the paper."""
        stats = {"acc_top1": float((logits.argmax(dim=1) == 0).float().mean())}
        if labels is None or bool((labels < 0).all()):
            return stats
        top = neg.topk(min(FALSE_NEGATIVE_TOP, neg.shape[1]), dim=1).indices
        stats["fn_top1024"] = _same_label_share(labels, self.queue_labels[top])
        if mix is not None:
            stats["fn_synthetic"] = _same_label_share(
                labels, self.queue_labels[mix.dominant_queue_idx()]
            )
        return stats


def _same_label_share(labels: Tensor, neighbour_labels: Tensor) -> float:
    """Share of (query, negative) pairs with the same class, over negatives of known class."""
    known = neighbour_labels >= 0
    if not bool(known.any()):
        return float("nan")
    same = (neighbour_labels == labels.unsqueeze(1)) & known
    return float(same.sum() / known.sum())


# ---------------------------------------------------------------------------------------------
# feature-space metrics (Wang & Isola 2020) on a held-out sample


def feature_metrics(
    feats: Tensor, labels: Tensor | None, n_pairs: int = 100_000, seed: int = 0
) -> dict[str, float]:
    """Alignment (same-class pairs, alpha=2) and uniformity (t=2) of L2-normalized features,
    estimated by `cog.protocols.metrics` on `n_pairs` random pairs (the same estimator
    as `cog-eval`)."""
    from cog.protocols.metrics import alignment, uniformity

    x = feats.float().cpu().numpy()
    out: dict[str, float] = {"n": len(x), "n_pairs": n_pairs, "seed": seed}
    out["uniformity"] = uniformity(x, n_pairs=n_pairs, seed=seed)
    if labels is not None and bool((labels >= 0).all()):
        y = labels.cpu().numpy()
        if len(np.unique(y)) < len(y):  # some class has two images: there are positive pairs
            out["alignment"] = alignment(x, y, n_pairs=n_pairs, seed=seed)
    return out
