"""cog-models: list the model zoo, show a card, check that a checkpoint loads strictly, and
fetch weights ahead of a run.

`check` converts the checkpoint with the card's converter, loads it strictly (every
architecture tensor filled, no stray keys besides the card's documented heads), runs one
batch of two images through the exact eval preprocessing and prints the feature dimension.
When the card records a fingerprint (the features of cog's canonical input), `check` verifies
it and refuses a model that computes something else; `check NAME --record` writes it into
the card's file.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cog import CogError
from cog.cli import CogParser, add_quiet, add_trust_checkpoint, friendly_errors

#: What the group letters mean (the paper's model groups, plus user cards).
GROUP_LEGEND = {
    "sup": "the supervised ResNet-50 baseline",
    "a": "other architectures",
    "s": "self-supervised",
    "r": "regularization / distillation",
    "d": "extra (web) data",
    "local": "user cards: models trained or compressed here ($COG_HOME/models)",
}

EPILOG = """examples:
  cog-models list --group s
  cog-models show dino_resnet50
  cog-models check sup_resnet50 --device cpu"""


def parser() -> argparse.ArgumentParser:
    p = CogParser(prog="cog-models", description=__doc__, epilog=EPILOG)
    sub = p.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser(
        "list", help="one line per model", epilog="example:\n  cog-models list --group sup"
    )
    ls.add_argument(
        "--group", choices=tuple(GROUP_LEGEND), help="only this group (legend under the list)"
    )
    ls.add_argument("--names", action="store_true", help="names only, one a line")
    show = sub.add_parser(
        "show",
        help="print a model card (YAML) and where its weights are",
        epilog="example:\n  cog-models show dino_resnet50",
    )
    show.add_argument("name", help="model name or alias")
    check = sub.add_parser(
        "check",
        help="convert, load strictly, run one batch",
        epilog="example:\n  cog-models check sup_resnet50 --checkpoint resnet50.pth",
    )
    check.add_argument("name", help="model name or alias")
    check.add_argument(
        "--checkpoint",
        type=Path,
        help="local checkpoint in the card's original layout (default: the "
        "card's weight sources: cache, then download)",
    )
    add_trust_checkpoint(check)
    check.add_argument(
        "--random-init",
        action="store_true",
        help="random weights (smoke test of the architecture only)",
    )
    check.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    check.add_argument(
        "--record",
        action="store_true",
        help="write the fingerprint (features of cog's canonical input) into the card's file "
        "instead of verifying it; only with weights you have checked",
    )
    check.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="with --record: the fingerprint's tolerance (default 0.02, about cosine 0.9998)",
    )
    fetch = sub.add_parser(
        "fetch",
        help="download and verify every weight file the cards need (resumes broken transfers; "
        "records files without a published checksum in $COG_HOME/weights.lock)",
        epilog="examples:\n  cog-models fetch --group s\n  cog-models fetch 'dino_*' --offline",
    )
    fetch.add_argument("names", nargs="*", help="model names, aliases or patterns ('dino_*')")
    fetch.add_argument("--group", choices=tuple(GROUP_LEGEND), help="every model of this group")
    fetch.add_argument("--all", action="store_true", help="every model of the zoo")
    fetch.add_argument(
        "--offline",
        action="store_true",
        help="never touch the network (also COG_OFFLINE=1 / HF_HUB_OFFLINE=1): check the "
        "caches and name the missing files",
    )
    add_quiet(fetch)
    return p


def _weights_kind(card) -> str:
    if card.base is not None:
        return f"{card.base}+{card.projection.kind}"
    return ",".join(dict.fromkeys(w.kind for w in card.weights))


def cmd_list(group: str | None, names_only: bool) -> int:
    from cog import zoo

    names = zoo.list_models(group)
    if names_only:
        print("\n".join(names))
        return 0
    rows = [("name", "group", "arch", "dim", "input", "weights", "cached", "aliases")]
    for n in names:
        c = zoo.get_card(n)
        arch = f"{c.arch.source}:{c.arch.name}" if c.arch else f"base:{c.base}"
        rows.append(
            (
                n,
                c.group,
                arch,
                str(c.feature_dim),
                str(c.preprocess.crop),
                _weights_kind(c),
                _cached_state(zoo, c),
                ", ".join(c.aliases),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for r in rows:
        print("  ".join(v.ljust(w) for v, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1])
    print(f"\n{len(names)} models" + (f" in group {group}" if group else ""))
    print("groups:")
    for g, meaning in GROUP_LEGEND.items():
        print(f"  {g:<6} {meaning}")
    print("cached: yes = weights on disk (no download needed); base = its base model's are")
    return 0


def _cached_state(zoo, card) -> str:
    """yes/no: are the weights on disk already; composites answer for their base."""
    if card.base is not None:
        return "base" if _cached_state(zoo, zoo.get_card(card.base)) == "yes" else "no"
    return "yes" if any(zoo._cached(w) for w in card.weights) else "no"


def cmd_show(name: str) -> int:
    import yaml

    from cog import zoo
    from cog.zoo import convert

    card = zoo.get_card(name)
    print(f"# {card.source_file}")
    print(yaml.safe_dump(card.to_dict(), sort_keys=False, width=100, allow_unicode=True), end="")
    if card.base is None:
        own = (
            "(the card's own converter)" if convert.is_custom(card.converter) else "(cog.zoo.archs)"
        )
        print(f"# converter {card.converter!r}: {convert.DOCS.get(card.converter, own)}")
        for w in card.weights:
            hit = zoo._cached(w)
            state = f"cached at {hit}" if hit else f"not cached; by hand: {zoo._where_to_put(w)}"
            print(f"# {w.describe()}: {state}")
    return 0


def record_fingerprint(card, backbone, tolerance: float | None) -> Path:
    """Write `backbone`'s fingerprint into its card's YAML file (other fields untouched)."""
    import yaml

    from cog.io import atomic_write
    from cog.zoo import fingerprint

    if card.base is not None:
        raise CogError(f"{card.name}: a composite card has no fingerprint; record its base")
    path = Path(str(card.source_file))
    if not path.is_file():
        raise CogError(f"{card.name}: its card file {path} is not writable here")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    kw = {} if tolerance is None else {"tolerance": tolerance}
    raw["fingerprint"] = fingerprint.record(backbone, **kw)
    fingerprint.validate(raw["fingerprint"], str(path))
    with atomic_write(path) as f:
        yaml.safe_dump(
            raw, f, sort_keys=False, allow_unicode=True, width=100, default_flow_style=None
        )
    return path


def cmd_check(
    name: str,
    checkpoint: Path | None,
    random_init: bool,
    device: str,
    record: bool = False,
    tolerance: float | None = None,
) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from cog import zoo
    from cog.zoo import fingerprint

    if record and random_init:
        raise CogError("--record needs real weights, not --random-init")

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise CogError(
            f"--device {device}: no CUDA device is visible to torch here; use --device cpu "
            "(or auto)"
        )
    t0 = time.perf_counter()
    backbone = zoo.load(name, checkpoint=checkpoint, random_init=random_init, device=device)
    t_load = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    side = backbone.card.preprocess.resize + 32
    images = [
        Image.fromarray(rng.integers(0, 256, (side, side + 17, 3), dtype=np.uint8))
        for _ in range(2)
    ]
    batch = torch.stack([backbone.transform(im) for im in images])
    dev = next(backbone.parameters()).device
    with torch.no_grad():
        feats = backbone(batch.to(dev))
    if tuple(feats.shape) != (2, backbone.feature_dim):
        raise CogError(
            f"{name}: features have shape {tuple(feats.shape)}, the card says "
            f"[2, {backbone.feature_dim}]; fix the card's feature.dim or arch"
        )
    if not torch.isfinite(feats).all():
        raise CogError(f"{name}: features contain NaN/inf; the checkpoint is damaged")
    card = backbone.card
    print(f"model          {card.name} ({card.group})")
    print(f"weights        {'random init' if random_init else checkpoint or 'card source'}")
    print(f"weights sha256 {backbone.weights_sha256}")
    print(f"strict load    ok ({zoo.n_params(backbone):.1f}M parameters, {t_load:.1f}s)")
    print(f"input          {tuple(batch.shape[1:])} {card.preprocess.channel_order}")
    print(f"feature dim    {feats.shape[1]}")
    if record:
        path = record_fingerprint(card, backbone, tolerance)
        print(f"fingerprint    recorded in {path}")
    else:
        print(f"fingerprint    {fingerprint.verify(backbone)}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from cog import CogError
    from cog.bench.batch import select_models
    from cog.zoo.fetch import fetch

    if not (args.names or args.group or args.all):
        raise CogError("cog-models fetch: name models, or pass --group G or --all")
    names = select_models(args.names, group=args.group, everything=args.all)
    results = fetch(names, offline=args.offline, progress=not args.quiet)
    for r in results:
        if r.status == "failed":
            print(f"FAILED  {r.model}: {r.error}")
        else:
            print(f"{r.status:<10} {r.model}  {r.path}  sha256 {r.sha256} ({r.check})")
    failed = [r.model for r in results if r.status == "failed"]
    print(
        f"{len(results) - len(failed)} ok, {len(failed)} failed"
        + (f": {', '.join(failed)}" if failed else "")
    )
    return 2 if failed else 0


@friendly_errors
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.cmd == "list":
        return cmd_list(args.group, args.names)
    if args.cmd == "show":
        return cmd_show(args.name)
    if args.cmd == "fetch":
        return cmd_fetch(args)
    return cmd_check(
        args.name, args.checkpoint, args.random_init, args.device, args.record, args.tolerance
    )


if __name__ == "__main__":
    sys.exit(main())
