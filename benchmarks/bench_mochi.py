"""Training-step time of MoCHi against plain MoCo-v2 at the same settings (the overhead the
paper calls small), plus the time of the mixing alone.

    python benchmarks/bench_mochi.py                      # CPU-sized defaults
    python benchmarks/bench_mochi.py --arch resnet50 --batch-size 256 --image-size 224 \\
        --queue 65536 --mochi 512,1024,512 --mochi 1024,1024,128 --device cuda --precision bf16

A step is what `cog-train-mochi` does per batch once the images are decoded: query and key
encoders, momentum update, logits (plus top-N selection and s + s' mixes for MoCHi),
backward, SGD, enqueue. Data loading is left out (it is the same for both). Modes are timed
in interleaved rounds (the order rotating each round) so that load on a shared machine hits
them alike; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from cog.io import atomic_write
from cog.ssl.mochi import MochiParams, MoCo, hard_negative_mix

HERE = Path(__file__).resolve().parent


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--image-size", type=int, default=96)
    p.add_argument("--queue", type=int, default=65536)
    p.add_argument("--mochi", action="append", help="N,s,s' (repeatable); default 512,1024,512")
    p.add_argument("--steps", type=int, default=1, help="timed steps per mode and round")
    p.add_argument("--rounds", type=int, default=15, help="rounds; modes alternate each round")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "mochi.json")
    args = p.parse_args()

    dev = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(dev)
    precision = args.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = [None] + [MochiParams.parse(m) for m in (args.mochi or ["512,1024,512"])]
    torch.manual_seed(0)
    model = MoCo(arch=args.arch, queue_size=args.queue).to(device).train()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True
    opt = torch.optim.SGD(model.encoder_q.parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    im_q, im_k = torch.randn(shape, device=device), torch.randn(shape, device=device)
    labels = torch.randint(0, 1000, (args.batch_size,), device=device)
    if device.type == "cuda":
        im_q = im_q.contiguous(memory_format=torch.channels_last)
        im_k = im_k.contiguous(memory_format=torch.channels_last)

    def step(mochi: MochiParams | None) -> None:
        with _autocast(device, precision):
            loss, _ = model(im_q, im_k, labels, mochi=mochi)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    times: dict[str, list[float]] = {str(s or "off"): [] for s in settings}
    for s in settings:
        for _ in range(args.warmup):
            step(s)
    for r in range(args.rounds):
        for s in settings[r % len(settings) :] + settings[: r % len(settings)]:  # rotate order
            for _ in range(args.steps):
                _sync(device)
                t = time.perf_counter()
                step(s)
                _sync(device)
                times[str(s or "off")].append(time.perf_counter() - t)

    # the mixing alone (top-N of the given similarities and the s + s' mixes: the extra work
    # of a MoCHi step, since MoCo computes q @ queue anyway), on the same batch and queue
    with torch.no_grad():
        q = torch.nn.functional.normalize(torch.randn(args.batch_size, model.dim, device=device))
        neg = q @ model.queue
    mix_ms = {}
    for s in settings[1:]:
        runs = []
        for _ in range(args.rounds * args.steps):
            _sync(device)
            t = time.perf_counter()
            hard_negative_mix(q, model.queue, s, neg_logits=neg)
            _sync(device)
            runs.append(time.perf_counter() - t)
        mix_ms[str(s)] = 1000 * statistics.median(runs)

    base = statistics.median(times["off"])
    rows = []
    for key, ts in times.items():
        med = statistics.median(ts)
        rows.append(
            {
                "mode": "moco-v2" if key == "off" else f"mochi({key})",
                "step_ms_median": 1000 * med,
                "step_ms_min": 1000 * min(ts),
                "images_per_s": args.batch_size / med,
                "overhead_vs_moco_pct": 100 * (med / base - 1),
                "mix_only_ms": mix_ms.get(key),
                "n_steps": len(ts),
            }
        )
    result = {
        "what": "training-step time, MoCHi vs MoCo-v2 (data loading excluded)",
        "settings": {
            "arch": args.arch,
            "batch_size": args.batch_size,
            "image_size": args.image_size,
            "queue": args.queue,
            "precision": precision,
            "steps_per_round": args.steps,
            "rounds": args.rounds,
        },
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu_threads": torch.get_num_threads(),
        "machine": platform.node() or platform.machine(),
        "torch": torch.__version__,
        "results": rows,
    }
    for r in rows:
        print(
            f"{r['mode']:>24}: {r['step_ms_median']:8.1f} ms/step  "
            f"{r['images_per_s']:7.1f} img/s  overhead {r['overhead_vs_moco_pct']:+5.1f}%"
            + (f"  (mixing alone {r['mix_only_ms']:.2f} ms)" if r["mix_only_ms"] else "")
        )
    # one file, one entry per device kind: a GPU run does not erase the CPU figures
    runs = json.loads(args.out.read_text()).get("runs", {}) if args.out.is_file() else {}
    runs[f"{result['device']}|{args.arch}|b{args.batch_size}|{args.image_size}px"] = result
    with atomic_write(args.out) as f:
        json.dump({"benchmark": "bench_mochi.py", "runs": runs}, f, indent=2)
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
