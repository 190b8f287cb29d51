#!/usr/bin/env bash
# GPU measurements, run on a CUDA machine from the repository root:
#   bash benchmarks/gpu.sh a OUTDIR   # zoo on CUDA, extraction, architectures, MoCHi step time
#   bash benchmarks/gpu.sh b OUTDIR   # probe on one CoG-sized level, TLDR on 1.28M x 2048
# Nothing here is needed by the tests; JSON results land in OUTDIR (copied into
# benchmarks/results/*_gpu.json by hand, with the machine named in each file).
set -uo pipefail
stage=${1:?stage a or b}
out=${2:-benchmarks/results}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, timm, torchvision; print('torch', torch.__version__, 'timm', timm.__version__)"

if [ "$stage" = a ]; then
  # every zoo architecture on CUDA with random weights: one batch through its own transform
  python3 - "$out/zoo_gpu.json" <<'PY'
import json, sys, time
import numpy as np, torch
from PIL import Image
from cog import zoo
img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (375, 500, 3), np.uint8))
rows = []
for name in zoo.list_models():
    t = time.perf_counter()
    try:
        b = zoo.load(name, random_init=True, device="cuda").eval()
        x = torch.stack([b.transform(img)] * 2).cuda()
        with torch.inference_mode():
            f = b(x)
        ok = tuple(f.shape) == (2, b.feature_dim) and bool(torch.isfinite(f).all())
        rows.append(dict(model=name, ok=ok, dim=b.feature_dim, shape=list(f.shape)))
    except Exception as e:  # report every model, never stop at the first failure
        rows.append(dict(model=name, ok=False, error=f"{type(e).__name__}: {e}"[:300]))
    rows[-1]["seconds"] = round(time.perf_counter() - t, 2)
    print(rows[-1], flush=True)
    torch.cuda.empty_cache()
json.dump(dict(device=torch.cuda.get_device_name(), models=rows), open(sys.argv[1], "w"), indent=1)
print("zoo on cuda:", sum(r["ok"] for r in rows), "/", len(rows), "ok")
PY
  python3 benchmarks/bench_extract.py --model sup_resnet50 --images 8192 --device cuda \
    --tree /tmp/cog_bench_tree --out "$out/extract_gpu.json"
  python3 benchmarks/bench_archs.py --device cuda --batch 64 --iters 20 --out "$out/archs_gpu.json"
  python3 benchmarks/bench_mochi.py --arch resnet50 --batch-size 256 --image-size 224 \
    --queue 65536 --mochi 512,1024,512 --mochi 1024,1024,128 --device cuda --precision bf16 \
    --rounds 10 --warmup 5 --out "$out/mochi_gpu.json"
fi
if [ "$stage" = b ]; then
  python3 benchmarks/bench_probe.py ${PROBE_ARGS:---level --device cuda} --out "$out/probe_gpu.json"
  python3 benchmarks/bench_tldr.py --n 1281167 --dims-in 2048 --epochs 2 --device cuda --tf32 \
    --out "$out/tldr_gpu.json"
fi
