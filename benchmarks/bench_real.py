"""Real weights on real photos: cog's features (fast, --exact, --jpeg-draft, --decode gpu)
against the EfficientNet-Lite reference implementation's own forward pass.

    python benchmarks/bench_real.py [--models 0,1,2] [--set full|small] [--device cpu]

Photos: matplotlib's grace_hopper.jpg and scikit-learn's china.jpg and flower.jpg, each in
the variants of `cog.features.photos` (full set: short side 200/300/480/720 px, landscape and
portrait, JPEG and PNG: 48 images). Per mode: min/median cosine to the reference features,
images whose top-1 or top-5 classes differ (our features through the reference's
classifier). Writes benchmarks/results/real_weights.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
from pathlib import Path

import numpy as np
import torch

from cog import zoo
from cog.features.cache import open_features
from cog.features.extract import extract
from cog.features.images import image_folder
from cog.features.photos import FULL_SET, SMALL_SET, photo_tree
from cog.zoo.reference import agreement, lite_reference, reference_outputs

HERE = Path(__file__).resolve().parent
MODES = {
    "fast": {"decode": "cpu"},
    "exact": {"exact": True},
    "fast+jpeg-draft": {"jpeg_draft": True},
    # the device decode path (cog.features.decode): on the GPU with --device cuda, else on the CPU
    "fast+decode-gpu": {"decode": "gpu"},
}


def run(k: int, tree: Path, work: Path, device: str) -> dict:
    images = image_folder(tree, name="photos", split="test")
    paths = [tree / p for p in images.paths]
    net, transform = lite_reference(k)
    ref_f, ref_l = reference_outputs(net, transform, paths)
    backbone = zoo.load(f"efficientnet_lite{k}")
    resize = backbone.card.preprocess.resize
    from PIL import Image

    large = np.array([p.suffix == ".jpg" and min(Image.open(p).size) >= 2 * resize for p in paths])
    out = {"model": backbone.card.name, "images": len(paths), "draft_reduced": int(large.sum())}
    for mode, kw in MODES.items():
        h5 = extract(
            backbone,
            images,
            work / f"lite{k}_{mode}.h5",
            dtype="float32",
            device=device,
            precision="fp32",  # the input pipelines are compared, not the precisions
            workers=0,
            progress=False,
            **kw,
        )
        with open_features(h5) as fs:
            ours = fs.load()
            attrs = fs.attrs
        a = agreement(net, ours, ref_f, ref_l)
        bad = [str(paths[i].name) for i in np.flatnonzero(~a["top1_same"])]
        out[mode] = {
            "min_cosine": float(a["cosine"].min()),
            "median_cosine": float(np.median(a["cosine"])),
            "min_cosine_draft_reduced": float(a["cosine"][large].min()) if large.any() else None,
            "top1_changed": len(bad),
            "top1_changed_images": bad,
            "top5_set_changed": int((~a["top5_same"]).sum()),
            "fingerprint": attrs.get("fingerprint"),
            "fast_path": attrs.get("fast_path"),
            "decode_choice": attrs.get("decode_choice"),
        }
        print(
            f"lite{k} {mode:16s} min cos {out[mode]['min_cosine']:.7f} "
            f"median {out[mode]['median_cosine']:.7f} top-1 changed {len(bad)}/{len(paths)} "
            f"top-5 set changed {out[mode]['top5_set_changed']}"
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="0", help="Lite variants, e.g. 0,1,2")
    ap.add_argument("--set", choices=("full", "small"), default="full")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "real_weights.json")
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        tree = photo_tree(Path(tmp) / "photos", FULL_SET if a.set == "full" else SMALL_SET)
        results = [run(int(k), tree, Path(tmp), a.device) for k in a.models.split(",")]
    record = {
        "command": f"python benchmarks/bench_real.py --models {a.models} --set {a.set}"
        + (f" --device {a.device}" if a.device != "cpu" else ""),
        "machine": platform.platform(),
        "torch": torch.__version__,
        "results": results,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(record, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
