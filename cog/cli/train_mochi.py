"""cog-train-mochi: train MoCo-v2 with MoCHi hard negative mixing and register it in the zoo."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import SimpleNamespace

from cog import CogError
from cog.cli import (
    CogParser,
    add_deprecated_value,
    add_out,
    add_overwrite,
    add_quiet,
    check_out_dir,
    dataclass_defaults,
    friendly_errors,
)

EPILOG = """examples:
  cog-train-mochi --in1k-root /data/imagenet --name mochi_r50 --epochs 200
  torchrun --nproc_per_node 8 -m cog.cli.train_mochi --in1k-root /data/imagenet --name mochi_r50
  cog-train-mochi --in1k-root my_images/ --name tiny --arch resnet18 --epochs 2 --device cpu"""


def build_parser() -> argparse.ArgumentParser:
    d = SimpleNamespace(**dataclass_defaults("cog.ssl.config", "TrainConfig"))
    p = CogParser(
        prog="cog-train-mochi",
        description="Train MoCo-v2 with MoCHi(N, s, s') hard negative mixing on an image\n"
        "folder (DIR/<class>/*.jpg) or the ImageNet-1K train layout (DIR/train/<wnid>/), then\n"
        "register the result as a `local` zoo card so that `cog-eval NAME` works.",
        epilog=EPILOG,
    )
    a = p.add_argument
    a(
        "--in1k-root",
        dest="data",
        metavar="DIR",
        help="ImageNet-1K root holding train/, or any image folder of <class>/ subfolders "
        "(required)",
    )
    add_deprecated_value(p, "--data", "data", "--in1k-root")
    a("--name", required=True, help="zoo name of the trained model")
    a(
        "--arch",
        default=d.arch,
        help="timm name, timm:NAME, torchvision:NAME or a zoo model "
        "(its architecture, randomly initialised)",
    )
    a("--epochs", type=int, default=d.epochs, help="training epochs")
    a("--batch-size", type=int, default=d.batch_size, help="global batch over all processes")
    a("--image-size", type=int, default=d.image_size, help="training crop size")
    a("--queue", type=int, default=d.queue, help="K, number of queued negatives")
    a(
        "--mochi",
        default=d.mochi,
        help="N,s,s' (hardest N, s two-negative mixes, s' query mixes) or 'off' for plain MoCo-v2",
    )
    a(
        "--mochi-warmup",
        type=int,
        default=d.mochi_warmup,
        help="epochs of plain MoCo-v2 before mixing starts",
    )
    add_out(p, None, "run folder (default: $COG_HOME/train/NAME)")
    a("--resume", action="store_true", help="continue the run in --out from its last epoch")
    a("--dim", type=int, default=d.dim, help="output dimension of the MLP head")
    a("--mlp-dim", type=int, default=d.mlp_dim, help="hidden width (default: backbone width)")
    a("--key-momentum", type=float, default=d.key_momentum, help="m of the key encoder")
    a("--temperature", type=float, default=d.temperature)
    a("--lr", type=float, default=d.lr, help="SGD lr for batch 256, scaled linearly")
    a("--sgd-momentum", type=float, default=d.sgd_momentum)
    a("--weight-decay", type=float, default=d.weight_decay)
    a("--workers", type=int, default=d.workers, help="data-loading processes per GPU")
    a("--device", default=d.device, help="auto | cpu | cuda")
    a(
        "--precision",
        default=d.precision,
        choices=["auto", "fp32", "bf16", "fp16"],
        help="auto: bf16 (else fp16) autocast on GPU, fp32 on CPU",
    )
    a(
        "--bn",
        default=d.bn,
        choices=["shuffle", "sync", "local"],
        help="batch-norm across processes: shuffled keys (MoCo), SyncBatchNorm, or neither",
    )
    a("--seed", type=int, default=d.seed)
    a(
        "--holdout",
        type=int,
        default=d.holdout,
        help="images kept out of training for alignment/uniformity (at most 20%%)",
    )
    a("--eval-every", type=int, default=d.eval_every, help="epochs between held-out metrics")
    a("--log-every", type=int, default=d.log_every, help="steps between log records")
    a(
        "--eval-size",
        type=int,
        default=d.eval_size,
        help="evaluation preprocessing written to the card: resize short side, centre crop",
    )
    add_overwrite(p, "replace an existing user zoo card NAME", old=("--overwrite-card",))
    a("--no-register", action="store_true", help="train only; do not write a zoo card")
    add_quiet(p)
    return p


def config_from_args(args: argparse.Namespace):
    """The TrainConfig the options describe (imports cog.ssl.train, after parsing)."""
    from cog.ssl.config import TrainConfig

    fields = TrainConfig.__dataclass_fields__
    cfg = TrainConfig(**{k: v for k, v in vars(args).items() if k in fields})
    cfg.data = str(Path(cfg.data).expanduser().resolve())  # the card must work from anywhere
    if cfg.out:
        cfg.out = str(Path(cfg.out).expanduser().resolve())
    return cfg


def _check_name_free(cfg, overwrite: bool) -> None:
    """Fail before hours of training, not after, when NAME is already another model's."""
    from cog import zoo

    try:
        card = zoo.get_card(cfg.name)
    except CogError:
        return
    user_card = Path(card.source_file or "").parent == zoo.user_dir()
    if overwrite and user_card:
        return
    if overwrite:
        raise CogError(
            f"--name {cfg.name}: {card.name} is a model shipped with cog ({card.source_file}); "
            "--overwrite replaces only user cards: choose another name"
        )
    out = cfg.out_dir().resolve()
    paths = [Path(w.location) for w in card.weights if w.kind == "path" and w.location]
    if card.group == "local" and any(p.parent == out for p in paths):
        return  # our own earlier registration of this run
    raise CogError(
        f"--name {cfg.name}: the zoo already has a model of that name (group {card.group}); "
        "choose another name or pass --overwrite"
    )


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    if args.data is None:
        p.error("the following arguments are required: --in1k-root")
    cfg = config_from_args(args)
    cfg.validate()
    check_out_dir(cfg.out_dir())
    register = not args.no_register
    if register:
        _check_name_free(cfg, args.overwrite)
    from cog.ssl.train import mochi_card, train

    final = train(cfg, resume=args.resume, progress=not args.quiet)
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_rank() != 0:
        return 0
    print(f"checkpoint: {final}")
    if register:
        from cog import zoo

        path = zoo.register_card(mochi_card(cfg, final), overwrite=True)
        print(f"zoo card: {path}  (evaluate with: cog-eval {cfg.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
