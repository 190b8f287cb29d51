"""Real photos shipped by installed packages, in the variants a benchmark meets: landscape and
portrait, smaller than the resize target and large enough for JPEG draft decoding, PNG and
JPEG. Used to check real weights end to end (tests, benchmarks) without any download.

Sources: matplotlib's `mpl-data/sample_data/grace_hopper.jpg` and scikit-learn's
`datasets/images/china.jpg` and `flower.jpg` (both packages are cog dependencies).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from cog import CogError

#: photo -> (an ImageNet-1K wnid for its class folder, the class the photo shows)
PHOTOS = {
    "grace_hopper": ("n03763968", "military uniform"),
    "china": ("n03877845", "palace"),
    "flower": ("n11939491", "daisy"),
}
#: (short side in px or None for the file as shipped, rotate to portrait/landscape, format)
SMALL_SET = (
    (None, False, "JPEG"),
    (300, True, "PNG"),
    (200, False, "JPEG"),
    (600, True, "JPEG"),
)
FULL_SET = tuple(
    (short, rotate, fmt)
    for short in (200, 300, 480, 720)
    for rotate in (False, True)
    for fmt in ("JPEG", "PNG")
)


def photo_path(name: str) -> Path:
    """The shipped file of photo `name`; CogError naming the package if it is missing."""
    if name == "grace_hopper":
        import matplotlib

        p = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    else:
        import sklearn

        p = Path(sklearn.__file__).parent / "datasets" / "images" / f"{name}.jpg"
    if not p.is_file():
        raise CogError(f"{p}: sample photo missing; reinstall matplotlib and scikit-learn")
    return p


def write_variants(folder: Path, name: str, variants=SMALL_SET) -> list[Path]:
    """Write the variants of photo `name` into `folder` (bicubic rescale, 90-degree turn,
    JPEG quality 95 or PNG); returns the files written."""
    folder.mkdir(parents=True, exist_ok=True)
    src = photo_path(name)
    out = []
    for short, rotate, fmt in variants:
        ext = "jpg" if fmt == "JPEG" else "png"
        tag = f"{'orig' if short is None else short}{'_rot' if rotate else ''}"
        dst = folder / f"{name}_{tag}.{ext}"
        if short is None and not rotate and fmt == "JPEG":
            dst.write_bytes(src.read_bytes())  # the shipped file itself
        else:
            with Image.open(src) as im:
                img = im.convert("RGB")
            if rotate:
                img = img.transpose(Image.Transpose.ROTATE_90)
            if short is not None:
                w, h = img.size
                s = short / min(w, h)
                img = img.resize((round(w * s), round(h * s)), Image.Resampling.BICUBIC)
            img.save(dst, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        out.append(dst)
    return out


def photo_tree(root: Path, variants=SMALL_SET) -> Path:
    """`root/<wnid>/<photo>_<variant>.<ext>` for every photo: an image-folder tree."""
    for name, (wnid, _) in PHOTOS.items():
        write_variants(Path(root) / wnid, name, variants)
    return Path(root)
