#!/usr/bin/env bash
# The GPU benchmark on a fresh NVIDIA host (an NVIDIA driver; nothing else prepared): a virtual environment with
# the project (the converter and the AWS emulator), onnxruntime-gpu with CUDA and cuDNN as pip packages (its
# [cuda,cudnn] extras, for the CUDA the driver runs; onnxruntime.preload_dlls() loads them), the NVML bindings
# and onnx (to generate the Depth-Anything-shaped network); then `python -m bench.gpu` with this script's
# arguments, e.g.
#   bash bench/gpu.sh                            # FastDepth copied next to this script, else the package's copy
#   bash bench/gpu.sh --network path/to/net.onnx --json gpu.json
#   bash bench/gpu.sh --dry-run                  # the CPU dry run (any machine)
# A few minutes: the install (a few GB of wheels, mostly CUDA libraries), then the runs (bench/gpu.py).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${GPU_BENCH_VENV:-.venv-gpu}
python=""
for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" > /dev/null \
        && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2> /dev/null; then
        python=$candidate
        break
    fi
done
if [ -z "$python" ]; then
    echo "bench/gpu.sh: needs Python 3.11 or newer (python3.11 or later on PATH)" >&2
    exit 2
fi
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -e '.[stereo,emulator]' onnx nvidia-ml-py
dry_run=no
for arg in "$@"; do
    if [ "$arg" = "--dry-run" ]; then dry_run=yes; fi
done
if [ "$dry_run" = no ]; then
    # onnxruntime-gpu replaces the stereo extra's onnxruntime: both install the "onnxruntime" package.
    # onnxruntime-gpu is built for CUDA 13 from 1.27 (an NVIDIA driver of the 580 series or newer), for CUDA 12
    # before: the driver decides.
    driver=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2> /dev/null | head -n 1 || true)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
    if [ -n "$driver" ] && [ "${driver%%.*}" -ge 580 ]; then
        ort='onnxruntime-gpu[cuda,cudnn]>=1.27'
    else
        ort='onnxruntime-gpu[cuda,cudnn]>=1.21,<1.27'
    fi
    "$venv/bin/python" -m pip uninstall --quiet -y onnxruntime
    "$venv/bin/python" -m pip install --quiet "$ort"
fi
exec "$venv/bin/python" -m bench.gpu "$@"
