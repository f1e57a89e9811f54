#!/usr/bin/env bash
# One GPU session of issue 23, prepared to run as ONE device command (its time is short: 15 min a session, the
# machine's start included), from the repository root on the GPU image (torch + Triton, no pysam/pyBigWig/...):
#
#     make gpu-wheels                     # here, once: the image's missing packages as cp312 wheels (.gpuwheels/)
#     run(command="bash benchmarks/gpu_session.sh 480 --stages ACDE", carry=[".gpuwheels"], timeout_s=570)
#
# 1. the carried wheels into /tmp/site (nothing is installed into the image's own Python);
# 2. the GPU tests (`pytest -m gpu`: the Triton kernel and the GPU inference path against the float32 model);
# 3. benchmarks/gpu.py within what is left of BUDGET seconds, less 60: stage A (every lever of
#    benchmarks/gpu_levers.py), B, C (the real `atacdenoise infer` on the whole genome), D (training from an
#    on-disk dataset, also at batch 128), E (C again with D's trained model);
# 4. benchmarks/gpu_profile.py: the kernels of an inference batch and of a training step (gpu-profile.md).
# Everything lands in $OUT (gpu.md, gpu.json, logs); copy gpu.json to benchmarks/results/ and commit it.
# Arguments after the budget go to gpu.py. A dry run here: PYTHON=.venv/bin/python bash benchmarks/gpu_session.sh
# 300 --device cpu --quick (the wheels, built for the image's Python 3.12, are then skipped).
set -uo pipefail
budget=${1:-400}
py=${PYTHON:-python3}
out=${OUT:-/tmp/gpu-session}
mkdir -p "$out"
start=$(date +%s)
if [ -z "${PYTHON:-}" ]; then
    "$py" -m pip install -q --no-deps --no-index --target /tmp/site .gpuwheels/*.whl 2>&1 | tail -3
fi
export PYTHONPATH=/tmp/site:$PWD/workflow
export TRITON_DEFAULT_FP_FUSION=1
{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    "$py" -c 'import torch, triton; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn",
torch.backends.cudnn.version(), "triton", triton.__version__)'
} >"$out/versions.txt" 2>&1
cat "$out/versions.txt"
timeout 200 "$py" -m pytest -m gpu -q -rP -p no:cacheprovider tests/model/test_gpuconv.py tests/model/test_infer.py \
    tests/model/test_window_handoff.py >"$out/pytest-gpu.txt" 2>&1
echo "pytest -m gpu: exit $? ($(tail -1 "$out/pytest-gpu.txt"))"
left=$((budget - ($(date +%s) - start)))
"$py" benchmarks/gpu.py --out "$out" --budget "$((left - 60))" "${@:2}" >"$out/gpu-stdout.txt" 2>&1
echo "gpu.py: exit $?"
tail -60 "$out/gpu-stdout.txt"
# the whole-genome infer runs' own account: each stage's busy seconds, the slowest, the writers' hand-off
for log in "$out"/infer*.log; do
    [ -f "$log" ] && grep -h "busy per stage\|where the time went\|bigWig writers:" "$log" | cut -c1-400 |
        sed "s|^|$(basename "$log"): |"
done
# 4. where the card's time goes: the kernels of an inference batch and of a training step, per route
quick=$(printf '%s\n' "$@" | grep -q -- --quick && echo --quick)
device=$(printf '%s\n' "$@" | grep -q -- 'cpu' && echo cpu || echo cuda)
timeout 120 "$py" benchmarks/gpu_profile.py --out "$out" --device "$device" $quick >"$out/gpu-profile-stdout.txt" 2>&1
echo "gpu_profile.py: exit $?"
cat "$out/gpu-profile.md" 2>/dev/null | cut -c1-160 | head -80
