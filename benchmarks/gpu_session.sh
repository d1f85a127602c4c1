#!/usr/bin/env bash
# The GPU measurements of the study in one session (about 12 minutes on an H200), for a machine
# with CUDA whose Python already has torch and torchvision:
#   1. training-step throughput of the three networks at 32x48 and 224x224, batch 32 and 128, fp32 and
#      bf16 autocast, contiguous and channels_last, in the study's kernel mode (deterministic) and in
#      cuDNN's fastest (benchmarks/train_throughput.py); ResNet50 at 224x224 also through torch.compile;
#   2. the package's code paths on CUDA: data, base training, every compression method with
#      fine-tuning to a budget, distillation (benchmarks/gpu_check.py).
# Each step has its own time limit so that one slow step leaves the others' figures, and every timing is
# written as it is measured (--timings), so a step stopped at its limit keeps what it timed.
#   bash benchmarks/gpu_session.sh OUTDIR [PYTHON]
# Render the book's table here afterwards:
#   python benchmarks/train_throughput.py --render OUTDIR/timings_cuda.csv OUTDIR/timings_cuda_compile.csv \
#       --csv data/benchmarks/train_throughput_cuda.csv --html data/benchmarks/train_throughput_cuda.html
set -uo pipefail
out=${1:?usage: gpu_session.sh OUTDIR [PYTHON]}
python=${2:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$(cd "$(dirname "$0")/.." && pwd)${PYTHONPATH:+:$PYTHONPATH}"
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
"$python" -c "import torch, torchvision; print('torch', torch.__version__, 'torchvision', torchvision.__version__)" \
    | tee -a "$out/gpu.txt"
timeout 420 "$python" benchmarks/train_throughput.py --device cuda --threads 4 --batch 32 128 \
    --modes study fast --steps 20 --steps-large 10 --repeats 2 --no-compile \
    --timings "$out/timings_cuda.csv" 2>&1 | tee "$out/throughput_cuda.log" | grep -v "^{"
echo "throughput rc ${PIPESTATUS[0]}"
timeout 170 "$python" benchmarks/gpu_check.py --device cuda --subjects 40 --epochs 6 \
    --work /tmp/ocular-gpu-check --out "$out/gpu_check.json" 2>&1 | tee "$out/gpu_check.log" | tail -20
echo "gpu_check rc ${PIPESTATUS[0]}"
timeout 110 "$python" benchmarks/train_throughput.py --device cuda --threads 4 --models resnet50 --sizes 224x224 \
    --batch 128 --modes fast --precisions bf16 --formats channels_last --steps-large 10 --repeats 1 \
    --timings "$out/timings_cuda_compile.csv" 2>&1 | tee "$out/throughput_cuda_compile.log" | tail -4
echo "compile rc ${PIPESTATUS[0]}"
