"""The worker's series (``WorkerMetrics``) and what counts into them (``connect``): Celery's task signals and
the stage lifecycle's segment signals."""

from __future__ import annotations

import threading
import time
from typing import Any

from celery import signals
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from video_worker.stages import STAGE_NAMES
from video_worker.worker import lifecycle

#: Task name → the ``stage`` label.
STAGE_LABELS = {name: name.rsplit(".", 1)[-1] for name in STAGE_NAMES}
#: 50 ms (a skipped download, a record) to 2 h (a long inference).
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
OUTCOMES = ("completed", "skipped", "dead_lettered")
class WorkerMetrics:
    """The worker's series, on ``registry`` (None in multiprocess mode: the values are in files)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        self.segments = Counter("video_worker_segments_total", "Segments finished by this worker, by outcome",
                                ["outcome"], registry=registry)
        self.stage_seconds = Histogram("video_worker_stage_seconds", "Run time of each stage run", ["stage"],
                                       buckets=STAGE_BUCKETS, registry=registry)
        self.retries = Counter("video_worker_retries_total", "Stage runs that failed transiently and were retried",
                               ["stage"], registry=registry)
        self.model_seconds = Counter("video_worker_model_seconds_total",
                                     "Seconds inside the model (divide by wall time: accelerator utilisation)",
                                     registry=registry)
        self.bytes = Counter("video_worker_bytes_total", "Bytes downloaded from (in) and uploaded to (out) S3",
                             ["direction"], registry=registry)
        self.in_progress = Gauge("video_worker_segments_in_progress", "Segments whose chain is in this worker now",
                                 registry=registry, multiprocess_mode="livesum")
        for outcome in OUTCOMES:
            self.segments.labels(outcome)
        for stage in STAGE_LABELS.values():
            self.stage_seconds.labels(stage)
            self.retries.labels(stage)
        for direction in ("in", "out"):
            self.bytes.labels(direction)
        # By (task id, thread): a retry (same id) may start before the run that published it has ended.
        self._started: dict[tuple[str, int], float] = {}

    # Celery's signals and the lifecycle's (see ``connect``).
    def stage_started(self, task_id: str) -> None:
        self._started[(task_id, threading.get_ident())] = time.perf_counter()

    def stage_ended(self, task_id: str, stage: str) -> None:
        started = self._started.pop((task_id, threading.get_ident()), None)
        if started is not None:
            self.stage_seconds.labels(stage).observe(time.perf_counter() - started)

    def segment_entered(self) -> None:
        """A slot took a segment's message: it holds the segment until ``segment_left``."""
        self.in_progress.inc()

    def segment_left(self) -> None:
        self.in_progress.dec()


def connect(metrics: WorkerMetrics) -> None:
    """Count Celery's task signals and the lifecycle's segment signals into ``metrics`` (the worker's start)."""
    def prerun(sender: Any = None, task_id: str | None = None, task: Any = None, **_: Any) -> None:
        if task_id and getattr(task, "name", None) in STAGE_LABELS:
            metrics.stage_started(task_id)

    def postrun(sender: Any = None, task_id: str | None = None, task: Any = None, **_: Any) -> None:
        stage = STAGE_LABELS.get(getattr(task, "name", None) or "")
        if task_id and stage:
            metrics.stage_ended(task_id, stage)

    def entered(sender: Any = None, **_: Any) -> None:
        if sender in STAGE_LABELS:
            metrics.segment_entered()

    def left(sender: Any = None, **_: Any) -> None:
        if sender in STAGE_LABELS:
            metrics.segment_left()

    def retried(sender: Any = None, **_: Any) -> None:
        stage = STAGE_LABELS.get(getattr(sender, "name", None) or "")
        if stage:
            metrics.retries.labels(stage).inc()

    def succeeded(sender: Any = None, result: Any = None, **_: Any) -> None:
        if getattr(sender, "name", None) in STAGE_LABELS and isinstance(result, dict) and result.get("skipped"):
            metrics.segments.labels("skipped").inc()

    for signal, receiver in ((signals.task_prerun, prerun), (signals.task_postrun, postrun),
                             (signals.task_retry, retried), (signals.task_success, succeeded),
                             (lifecycle.segment_entered, entered), (lifecycle.segment_left, left)):
        # One set per process: a second worker started in it (tests) replaces the first one's.
        uid = f"video_worker.metrics.{receiver.__name__}"
        signal.disconnect(dispatch_uid=uid)
        signal.connect(receiver, weak=False, dispatch_uid=uid)
