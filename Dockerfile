# One image for the worker, the bridge and Flower; the command picks the role:
#   worker:  celery -A video_worker worker -l INFO        (default)
#   bridge:  video-worker bridge
#   flower:  celery -A video_worker flower --port=5555
#
# The image carries the 2D->3D converter that the worker runs by default (MODEL=stereo): the stereo extra, whose
# wheels bring everything it needs (PyAV bundles FFmpeg with libx264, OpenCV is the headless build, onnxruntime).
# Two variants from this one file:
#   CPU:  docker build -t video-worker .                   (the last stage, "cpu")
#   GPU:  docker build --target gpu -t video-worker:gpu .  (run with --gpus all; an NVIDIA driver for CUDA 12 on the
#         host): onnxruntime-gpu instead of onnxruntime, CUDA 12 and cuDNN 9 from the base image, STEREO_DEVICE=cuda.
# onnxruntime-gpu from PyPI is built for CUDA 12 up to 1.26 and for CUDA 13 from 1.27 (NVIDIA driver 580 or newer):
# for CUDA 13, --build-arg CUDA_IMAGE=nvidia/cuda:13.0.2-cudnn-runtime-ubuntu24.04 --build-arg ORT_GPU=onnxruntime-gpu
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
ARG ORT_GPU="onnxruntime-gpu>=1.20,<1.27"

FROM ${CUDA_IMAGE} AS gpu
ARG ORT_GPU
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PATH=/opt/venv/bin:$PATH \
    VIDEO_WORKER_SCRATCH_DIR=/scratch
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
WORKDIR /app
COPY pyproject.toml README.md celeryconfig.py ./
COPY video_worker ./video_worker
# onnxruntime-gpu replaces the stereo extra's onnxruntime: both install the same "onnxruntime" package, so only
# one may be present.
RUN pip install '.[stereo]' \
    && pip uninstall -y onnxruntime \
    && pip install "$ORT_GPU" \
    && useradd --create-home --uid 10001 worker \
    && mkdir -p /scratch && chown worker /scratch
# The depth network on the GPU. With STEREO_DEVICE=cuda every conversion of a worker runs in one model process
# sharing one copy of the network, ceil(2/3 x cores) + 1 of them at once (enough to keep the cores decoding and
# encoding), WORKER_CONCURRENCY two more (docs/stereo.md, docs/deployment.md).
ENV STEREO_DEVICE=cuda
USER worker
VOLUME ["/scratch"]
CMD ["celery", "-A", "video_worker", "worker", "-l", "INFO"]

FROM python:3.11-slim AS cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIDEO_WORKER_SCRATCH_DIR=/scratch
WORKDIR /app
COPY pyproject.toml README.md celeryconfig.py ./
COPY video_worker ./video_worker
RUN pip install '.[stereo]' \
    && useradd --create-home --uid 10001 worker \
    && mkdir -p /scratch && chown worker /scratch
USER worker
VOLUME ["/scratch"]
CMD ["celery", "-A", "video_worker", "worker", "-l", "INFO"]
