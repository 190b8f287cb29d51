#!/usr/bin/env bash
# GPU figures of issue 19 (device decoding), one go on a CUDA machine (H100/H200), from the
# repository root:   bash benchmarks/gpu_extract.sh [OUTDIR] [IMAGES]
# Each step has its own timeout and writes its JSON as soon as it finishes, so a run cut
# short still returns what it measured. Nothing here is needed by the tests.
#   1. pytest -m gpu: the CUDA tests (nvJPEG batches checked image by image, auto = gpu)
#   2. bench_extract.py, ResNet-50 bf16: baseline loop, cog CPU path, cog device path
#      (target: >= 6,000 images/s end to end), fidelity figures
#   3. the same for ViT-B/16 (vit_base_augreg_in1k), plus its forward-only speed (target: within 20%)
set -uo pipefail
out=${1:-benchmarks/results}
n=${2:-8192}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, torchvision; print('torch', torch.__version__, 'tv', torchvision.__version__)"
tree=${TMPDIR:-/tmp}/cog-gpu-extract-tree
sizes=500x375,500x333,375x500,640x480,800x600,1600x1200

timeout 120 python3 -m pytest -q -m gpu tests/test_decode.py 2>&1 | tail -5

for model in sup_resnet50 vit_base_augreg_in1k; do
  timeout 240 python3 benchmarks/bench_extract.py --model "$model" --device cuda \
    --images "$n" --sizes "$sizes" --tree "$tree" --repeats 1 \
    --out "$out/extract_decode_gpu_$model.json" 2>&1 | tail -40
done

# forward-only images/s (no decoding): the ceiling the device path is compared with
timeout 90 python3 - "$out/forward_only_gpu.json" <<'PY'
import json, sys, time
import torch
from cog import zoo
rows = {}
for name in ("sup_resnet50", "vit_base_augreg_in1k"):
    b = zoo.load(name, random_init=True, device="cuda").eval().to(memory_format=torch.channels_last)
    x = torch.randn(256, 3, 224, 224, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(3):
            b(x)
        torch.cuda.synchronize()
        t, k = time.perf_counter(), 20
        for _ in range(k):
            b(x)
        torch.cuda.synchronize()
    rows[name] = round(k * 256 / (time.perf_counter() - t), 1)
    print(name, rows[name], "images/s forward only, bf16, batch 256", flush=True)
json.dump(dict(device=torch.cuda.get_device_name(), forward_only_images_per_s=rows),
          open(sys.argv[1], "w"), indent=1)
PY

# fidelity on the GPU: real EfficientNet-Lite0/1/2 weights on 48 real photos, every mode
# (fast+decode-gpu = nvJPEG + tensor resize on the GPU) against the reference, fp32
timeout 240 python3 benchmarks/bench_real.py --models 0,1,2 --device cuda \
  --out "$out/real_weights_gpu.json" 2>&1 | tail -15
ls -l "$out"
