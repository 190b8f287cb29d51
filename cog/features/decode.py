"""The device decode path (`--decode gpu`): loader workers only read file bytes; JPEG decoding
(torchvision's batched nvJPEG `decode_jpeg(device=...)`), the resize of the shorter side with
the card's interpolation and antialiasing, the center crop and the normalization run on the
model's device, one batch ahead of the forward pass (side CUDA stream) when that is CUDA.
The same code runs on the CPU (torchvision's libjpeg-turbo decoder, tensor resize), which is
how tests and the start-up self-check exercise it without a GPU.

Files the device decoder cannot take (not JPEG content, grayscale or CMYK JPEGs, no
end-of-image marker as in a truncated file, or a decoder error) go through the CPU path
(`cog.features.images.decode_image` + the fast uint8 resize-crop) in the same run, with its
notes and failures recorded as on the CPU path; nothing is dropped.

`auto` takes this path only after `self_check` passes on a sample of the run's own files.

The CPU path's decoder (`decode_file`): plain 3-component JPEGs are decoded from their bytes
by simplejpeg (libjpeg-turbo, accurate DCT and upsampling: the same pixels as PIL's; the
fastest of the libjpeg-turbo decoders measured, benchmarks/README.md), or torchvision's CPU
`decode_jpeg` where simplejpeg is missing; everything else by `cog.features.images.decode_image`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cog.features.options import DECODES  # noqa: F401 (its old home; defined there)

#: the fidelity bar (real-weights issue): per-image feature cosine to the CPU path
MIN_COSINE = 0.9999
#: SOF markers the device decoder takes: baseline, extended sequential, progressive Huffman
_SOF_OK = (0xC0, 0xC1, 0xC2)


def device_refusal(data: bytes) -> str:
    """Empty when the device decoder can take these bytes, else why they take the CPU path."""
    if data[:2] != b"\xff\xd8":
        return "not JPEG content"
    if data[-2:] != b"\xff\xd9":
        return "no JPEG end marker (truncated or trailing data)"
    sof = _sof(data)
    if sof is None:
        return "no JPEG frame header"
    marker, comps = sof
    if marker not in _SOF_OK:
        return f"JPEG coding 0x{marker:02X} (lossless/arithmetic)"
    if comps != 3:
        return f"JPEG with {comps} colour component(s) (grayscale or CMYK)"
    return ""


def _sof(data: bytes) -> tuple[int, int] | None:
    """(SOF marker, component count) of a JPEG stream, reading marker segments only."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        m = data[i + 1]
        if m == 0xFF:  # fill byte
            i += 1
            continue
        if m == 0x01 or 0xD0 <= m <= 0xD8:  # markers without a length
            i += 2
            continue
        if m == 0xDA:  # start of scan before any frame header
            return None
        if 0xC0 <= m <= 0xCF and m not in (0xC4, 0xC8, 0xCC):
            return (m, data[i + 9]) if i + 9 < n else None
        i += 2 + int.from_bytes(data[i + 2 : i + 4], "big")
    return None


class DevicePreprocess:
    """Bytes of JPEG files -> uint8 [3, crop, crop] crops on `dev`, the pixels of the card's
    resize (shorter side, its interpolation, antialias) and center crop done on tensors."""

    def __init__(self, resize: int | None, crop: int, interpolation: str, dev) -> None:
        from torchvision.transforms import InterpolationMode

        self.resize, self.crop, self.dev = (int(resize) if resize else None), int(crop), dev
        self.interp = InterpolationMode(str(interpolation).lower())

    def decode(self, blobs: list[torch.Tensor]) -> list[torch.Tensor | str]:
        """Decoded uint8 [3, h, w] images on the device, or the decoder's error per image
        (a batch the batched decoder refuses is decoded one by one to find the bad file)."""
        from torchvision.io import ImageReadMode, decode_jpeg

        if not blobs:
            return []
        rgb = ImageReadMode.RGB
        warnings.filterwarnings("ignore", "The image decoding", DeprecationWarning)
        try:
            return list(decode_jpeg(blobs, mode=rgb, device=self.dev))
        except Exception:
            out: list[torch.Tensor | str] = []
            for b in blobs:
                try:
                    out.append(decode_jpeg([b], mode=rgb, device=self.dev)[0])
                except Exception as e:
                    out.append(f"device decoder: {type(e).__name__}: {e}")
            return out

    def resize_crop(self, img: torch.Tensor) -> torch.Tensor:
        """The card's resize and center crop of one decoded image, in uint8."""
        from torchvision.transforms.v2.functional import center_crop, resize

        if self.resize:
            img = resize(img, [self.resize], interpolation=self.interp, antialias=True)
        return center_crop(img, [self.crop, self.crop])


def decode_file(path: str | Path, draft_short: int | None = None) -> tuple[Image.Image, str]:
    """`cog.features.images.decode_image`'s (RGB image, note), faster for plain 3-component JPEGs:
    decoded from the bytes by libjpeg-turbo, `cpu_decoder()` (pixels identical to PIL's;
    the fast path's guard checks it on the run's sample). Odd files, draft decoding and any
    decoder error take `decode_image`, so notes and failures are recorded as before."""
    from cog.features.images import decode_image

    if draft_short is None:
        try:
            data = Path(path).read_bytes()
        except OSError:
            data = b""
        if data and not device_refusal(data):
            try:
                return Image.fromarray(_CPU_DECODERS[cpu_decoder()](data)), ""
            except Exception:  # decode_image decodes it or reports why not
                pass
    return decode_image(path, draft_short)


def _simplejpeg(data: bytes) -> np.ndarray:
    import simplejpeg

    # accurate DCT and upsampling (PIL's settings); strict: a corrupt stream goes to PIL
    return simplejpeg.decode_jpeg(data, "RGB", fastdct=False, fastupsample=False, strict=True)


def _torchvision(data: bytes) -> np.ndarray:
    from torchvision.io import ImageReadMode, decode_jpeg

    blob = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders (TorchCodec)
        warnings.simplefilter("ignore", DeprecationWarning)
        return decode_jpeg(blob, mode=ImageReadMode.RGB).permute(1, 2, 0).numpy()


_CPU_DECODERS = {"simplejpeg": _simplejpeg, "torchvision": _torchvision}


def cpu_decoder() -> str:
    """The CPU path's JPEG decoder: simplejpeg when installed, else torchvision's."""
    try:
        import simplejpeg  # noqa: F401
    except ImportError:
        return "torchvision"
    return "simplejpeg"


def read_item(path: Path, cpu_item) -> tuple:
    """A loader worker's item: ("bytes", uint8 tensor of the file) when the device decoder can
    take it, else ("cpu", *cpu_item(), reason): the CPU path's (uint8 crop, note, error)."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        data = b""
    why = device_refusal(data) if data else "unreadable"
    if not why:
        return ("bytes", torch.frombuffer(bytearray(data), dtype=torch.uint8), "", "")
    return ("cpu", *cpu_item(), why)


def collate(items: list[tuple]) -> list[tuple]:
    """Keep a batch as a list: byte strings differ in length and stay on the CPU."""
    return items


class DeviceBatches:
    """Iterates a loader of (index, item) lists as (uint8 batch on dev, index, notes, errors),
    the loader batches decoded on the device; on CUDA the next batch is decoded on a side
    stream while the caller runs the forward pass of the current one."""

    def __init__(self, loader, prep: DevicePreprocess, cpu_fallback) -> None:
        self.loader, self.prep, self.cpu_fallback = loader, prep, cpu_fallback
        self.routed = 0  # files that took the CPU path (reported after the run)
        cuda = torch.device(prep.dev).type == "cuda"
        self.stream = torch.cuda.Stream(prep.dev) if cuda else None

    def _batch(self, batch: list) -> tuple:
        idx = torch.tensor([i for i, _ in batch])
        items = [it for _, it in batch]
        pos = [k for k, it in enumerate(items) if it[0] == "bytes"]
        decoded = self.prep.decode([items[k][1] for k in pos])
        side = self.prep.crop
        x = torch.empty((len(items), 3, side, side), dtype=torch.uint8, device=self.prep.dev)
        notes, errors = [""] * len(items), [""] * len(items)
        for k, img in zip(pos, decoded, strict=True):
            if isinstance(img, str):  # the device refused it after all: the CPU path
                items[k] = ("cpu", *self.cpu_fallback(int(idx[k])), img)
            else:
                x[k] = self.prep.resize_crop(img)
        for k, it in enumerate(items):
            if it[0] == "cpu":
                _, crop, notes[k], errors[k], _why = it
                x[k] = crop.to(self.prep.dev, non_blocking=True)
                self.routed += 1
        return x, idx, notes, errors

    def __iter__(self):
        if self.stream is None:
            for batch in self.loader:
                yield self._batch(batch)
            return
        ahead = None
        for batch in self.loader:
            with torch.cuda.stream(self.stream):
                nxt = self._batch(batch)
            if ahead is not None:
                yield self._ready(ahead)
            ahead = nxt
        if ahead is not None:
            yield self._ready(ahead)

    def _ready(self, b: tuple) -> tuple:
        torch.cuda.current_stream(self.prep.dev).wait_stream(self.stream)
        b[0].record_stream(torch.cuda.current_stream(self.prep.dev))
        return b


def self_check(backbone, pipeline, prep: DevicePreprocess, root: Path, paths: list[str], dev):
    """Decode each sampled file both ways (CPU path and device path), run the model on both
    and compare the features: (passes, report). Passes when every device-decodable file of
    the sample has feature cosine >= MIN_COSINE (the real-weights bar); a sample with no
    device-decodable JPEG does not pass (nothing would be checked)."""
    from cog.features.images import decode_image

    cpu_x, blobs, names, kinds, routed = [], [], [], set(), []
    for p in paths:
        data = (root / p).read_bytes()
        why = device_refusal(data)
        if why:
            routed.append(f"{Path(p).suffix or '?'}: {why}")
            continue
        img, _ = decode_image(root / p)
        cpu_x.append(pipeline.uint8(img) if pipeline.uint8 is not None else None)
        blobs.append(torch.frombuffer(bytearray(data), dtype=torch.uint8))
        names.append(p)
        w, h = img.size
        kinds.add("landscape" if w > h else ("portrait" if h > w else "square"))
    # one batched call, as in the run: batched hardware decoding is where corrupted images
    # were reported (pytorch/vision#9606)
    dev_x = []
    for p, got in zip(names, prep.decode(blobs), strict=True):
        if isinstance(got, str):
            return False, f"{p}: {got}"
        dev_x.append(prep.resize_crop(got).cpu())
    if not names:
        return False, "no JPEG of the sample can take the device decoder: " + "; ".join(routed)
    if any(c is None for c in cpu_x):
        return False, "the CPU path uses the card's transform (fast path fell back)"
    a, b = torch.stack(cpu_x), torch.stack(dev_x)
    grey = int((a.int() - b.int()).abs().max())
    fa, fb = features(backbone, pipeline, a, dev), features(backbone, pipeline, b, dev)
    cos = (fa * fb).sum(1) / (fa.norm(dim=1) * fb.norm(dim=1)).clamp_min(1e-12)
    worst = int(cos.argmin())
    ok = bool(cos.min() >= MIN_COSINE)
    report = (
        f"{len(names)} sampled JPEGs ({', '.join(sorted(kinds))}) decoded both ways: "
        f"min feature cosine {float(cos.min()):.7f} (bar {MIN_COSINE}), max pixel difference "
        f"{grey} grey levels"
    )
    if routed:
        report += f"; {len(routed)} sampled file(s) take the CPU path ({routed[0]})"
    if not ok:
        report += f"; worst: {names[worst]}"
    return ok, report


def features(backbone, pipeline, x: torch.Tensor, dev) -> torch.Tensor:
    """fp32 features of a uint8 batch (the self-check compares inputs, not precisions)."""
    model = backbone.to(dev).eval()
    with torch.inference_mode():
        return model(pipeline.normalize(x.to(dev))).float().cpu()


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of two feature matrices."""
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
