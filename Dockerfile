# One image for the worker, the bridge and Flower; the command picks the role:
#   worker:  celery -A video_worker worker -l INFO        (default)
#   bridge:  video-worker bridge
#   flower:  celery -A video_worker flower --port=5555
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    VIDEO_WORKER_SCRATCH_DIR=/scratch

WORKDIR /app
COPY pyproject.toml README.md celeryconfig.py ./
COPY video_worker ./video_worker
RUN pip install . \
    && useradd --create-home --uid 10001 worker \
    && mkdir -p /scratch && chown worker /scratch

USER worker
VOLUME ["/scratch"]
CMD ["celery", "-A", "video_worker", "worker", "-l", "INFO"]
