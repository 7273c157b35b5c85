"""Video worker: S3 segment events → Celery chain download → infer → upload → record.

Importing the package (or any core module: ``video_worker.keys``,
``video_worker.segments``, ...) builds nothing and loads neither Celery nor
boto3. The names below are loaded on first access (PEP 562):

* ``app``: the Celery app of ``celery -A video_worker worker`` (built from the
  environment on first access);
* ``build_chain(segment, app=None)``: a segment's chain, for callers;
* ``create_app(settings=None)``: a new app (tests, embedding);
* ``Segment`` (also ``VideoWorkerPayload``), ``SegmentCompletion``,
  ``parse_segment_key``, ``build_output_segment_key``, ``process_segment``.
"""

from __future__ import annotations

import importlib
import threading
from typing import Any

_LAZY = {
    "create_app": ("video_worker.celery_app", "create_app"),
    "VideoWorkerApp": ("video_worker.worker.app", "VideoWorkerApp"),
    "Segment": ("video_worker.segments", "Segment"),
    "VideoWorkerPayload": ("video_worker.segments", "VideoWorkerPayload"),
    "SegmentCompletion": ("video_worker.segments", "SegmentCompletion"),
    "parse_segment_key": ("video_worker.keys", "parse_segment_key"),
    "build_output_segment_key": ("video_worker.keys", "build_output_segment_key"),
    "process_segment": ("video_worker.inference", "process_segment"),
}
_app_lock = threading.Lock()

__all__ = ["app", "build_chain", *_LAZY]


def build_chain(segment: Any, app: Any = None) -> Any:
    """The segment's ``download → infer → upload → record`` chain, through ``app`` (default: ``video_worker.app``)."""
    from video_worker.worker.chain import build_chain as chain_of

    return chain_of(segment, app if app is not None else __getattr__("app"))


def __getattr__(name: str) -> Any:
    if name == "app":
        with _app_lock:
            if "app" not in globals():
                from video_worker.celery_app import default_app

                globals()["app"] = default_app()
        return globals()["app"]
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'video_worker' has no attribute {name!r}")
