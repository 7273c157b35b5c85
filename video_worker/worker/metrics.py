"""The worker's Prometheus metrics (``METRICS_PORT``): what only the worker knows, served over HTTP.

Flower's own ``/metrics`` has the task events (counts, runtimes, workers online);
these add the segments' outcomes, time per stage, retries, time inside the model
(its rate is the accelerator's utilisation), bytes moved and segments held now.

How they are counted:

* Celery's signals (``task_prerun``/``task_postrun``/``task_retry``/``task_success``)
  for every stage, including those chain affinity runs (it runs them through
  Celery's tracer, each with its own task id): the stage histogram, retries,
  skips (a stage that returned ``skipped``);
* the lifecycle's ``segment_entered``/``segment_left`` (``worker/lifecycle.py``):
  the segments in progress (from a segment's first stage in a slot to the last
  one that slot runs for it).
* ``instrument``: the process's ``Dependencies`` and dead-letter store wrapped
  (``worker/context.py``) where no signal can see: a completion row written, a
  dead letter written (by a stage, the consumer or a revoke), seconds inside the
  model's ``run``, bytes of every S3 download and upload.

``MetricsEndpoint`` is the worker bootstep that turns them on. With the threads
or solo pool they live in the worker process. With prefork (or when the user sets
``PROMETHEUS_MULTIPROC_DIR``) they use prometheus_client's multiprocess mode: each
process writes its own files in ``PROMETHEUS_MULTIPROC_DIR`` (by default
``<scratch dir>/.metrics-<port>``, emptied at start), set before the pool forks; the
HTTP server runs in the worker's main process and adds up its children's files; a
child's live gauge is dropped when it exits (``mark_process_dead``, and at scrape
time for a child that was killed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import logging
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from celery import bootsteps, signals
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from video_worker.limits import Deadline
from video_worker.ports import CompletionStore, DeadLetterStore, ModelRunner, ObjectInfo, ObjectStorage
from video_worker.segments import Mode, SegmentCompletion
from video_worker.settings import Settings
from video_worker.stages import STAGE_NAMES, Dependencies
from video_worker.worker import lifecycle, upstream

if TYPE_CHECKING:
    from video_worker.letters import DeadLetter, Received

log = logging.getLogger(__name__)

#: Task name → the ``stage`` label.
STAGE_LABELS = {name: name.rsplit(".", 1)[-1] for name in STAGE_NAMES}
#: 50 ms (a skipped download, a record) to 2 h (a long inference).
STAGE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
OUTCOMES = ("completed", "skipped", "dead_lettered")
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


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


_metrics: WorkerMetrics | None = None


def enable(files: Path | None = None) -> CollectorRegistry:
    """Create the series (multiprocess: their values in files in ``files``); return the registry to serve."""
    global _metrics
    registry = CollectorRegistry()
    if files is None:
        _metrics = WorkerMetrics(registry)
        return registry
    os.environ[MULTIPROC_ENV] = str(files)  # the pool's children inherit it
    values.ValueClass = values.MultiProcessValue()  # prometheus_client chose at import, from the environment
    _metrics = WorkerMetrics(None)
    registry.register(Children(files))
    return registry


def disable() -> None:
    global _metrics
    _metrics = None


def multiprocess_dir(settings: Settings, port: int) -> tuple[Path, bool]:
    """The user's ``PROMETHEUS_MULTIPROC_DIR``, or ours under the scratch dir; and whether it is ours."""
    given = os.environ.get(MULTIPROC_ENV) or os.environ.get(MULTIPROC_ENV.lower())
    if given:
        return Path(given), False
    return settings.scratch_dir / f".metrics-{port}", True


def clean(path: Path, ours: bool) -> None:
    """Remove stale files: all of them in our own directory, those of processes no longer alive in the user's."""
    if ours:
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    for name in glob.glob(str(path / "*_*.db")):
        pid = _pid_of(name)
        if pid is not None and not _alive(pid):
            with contextlib.suppress(OSError):
                os.remove(name)


def _pid_of(name: str) -> int | None:
    try:
        return int(Path(name).stem.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Children(Collector):
    """prometheus_client's ``MultiProcessCollector``, after dropping the live gauges of processes that died
    without telling (a child killed by a signal, the OOM killer)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._files = MultiProcessCollector(None, path=str(path))

    def collect(self) -> Iterator[Any]:
        for name in glob.glob(str(self.path / "gauge_live*_*.db")):
            pid = _pid_of(name)
            if pid is not None and not _alive(pid):
                mark_process_dead(pid, str(self.path))
        return iter(self._files.collect())


# Where signals cannot see: wrappers of the process's dependencies (``worker/context.py`` calls ``instrument``).
class MeteredStorage:
    """``ObjectStorage``, counting the bytes of each download (in) and upload (out)."""

    def __init__(self, inner: ObjectStorage, metrics: WorkerMetrics) -> None:
        self._inner, self._metrics = inner, metrics

    def head(self, uri: str) -> ObjectInfo:
        return self._inner.head(uri)

    def download(self, uri: str, dest: Path, version_id: str | None = None, size: int | None = None,
                 deadline: Deadline | None = None) -> int:
        got = self._inner.download(uri, dest, version_id, size, deadline)
        self._metrics.bytes.labels("in").inc(got)
        return got

    def upload(self, src: Path, uri: str, *, metadata: Mapping[str, str] | None = None,
               if_match: str | None = None, if_none_match: bool = False, deadline: Deadline | None = None) -> str:
        size = src.stat().st_size
        etag = self._inner.upload(src, uri, metadata=metadata, if_match=if_match, if_none_match=if_none_match,
                                  deadline=deadline)
        self._metrics.bytes.labels("out").inc(size)
        return etag

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class MeteredModel:
    """``ModelRunner``, adding the seconds of each run (failed ones too: the accelerator was busy)."""

    def __init__(self, inner: ModelRunner, metrics: WorkerMetrics) -> None:
        self._inner, self._metrics = inner, metrics

    @property
    def fingerprint(self) -> str | None:
        return self._inner.fingerprint

    @fingerprint.setter
    def fingerprint(self, value: str | None) -> None:
        self._inner.fingerprint = value

    @property
    def context_frames(self) -> int:
        return self._inner.context_frames

    def run(self, src: Path, dst: Path, mode: Mode, deadline: Deadline, context: Path | None = None) -> None:
        started = time.perf_counter()
        try:
            self._inner.run(src, dst, mode, deadline, context)
        finally:
            self._metrics.model_seconds.inc(time.perf_counter() - started)

    def close(self) -> None:
        self._inner.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class MeteredCompletions:
    """``CompletionStore``: a row written is a segment ``completed``; a row already there, ``skipped``."""

    def __init__(self, inner: CompletionStore, metrics: WorkerMetrics) -> None:
        self._inner, self._metrics = inner, metrics

    def get(self, job_id: str, segment_index: int) -> SegmentCompletion | None:
        return self._inner.get(job_id, segment_index)

    def put(self, completion: SegmentCompletion) -> bool:
        written = self._inner.put(completion)
        self._metrics.segments.labels("completed" if written else "skipped").inc()
        return written

    def rows(self, job_id: str) -> list[SegmentCompletion]:
        return self._inner.rows(job_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class MeteredDeadLetters:
    """``DeadLetterStore``: each letter written is a segment (or message) ``dead_lettered``."""

    def __init__(self, inner: DeadLetterStore, metrics: WorkerMetrics) -> None:
        self._inner, self._metrics = inner, metrics
        self.url = inner.url

    def put(self, letter: DeadLetter) -> None:
        self._inner.put(letter)
        self._metrics.segments.labels("dead_lettered").inc()

    def receive_all(self, hold_seconds: int = 30, limit: int = 10_000) -> Iterator[Received]:
        return self._inner.receive_all(hold_seconds, limit)

    def release(self, receipt_handle: str) -> None:
        self._inner.release(receipt_handle)

    def delete(self, receipt_handle: str) -> None:
        self._inner.delete(receipt_handle)


def instrument(dependencies: Dependencies) -> Dependencies:
    """The stages' dependencies, metered if metrics are on."""
    metrics = _metrics
    if metrics is None:
        return dependencies
    return dataclasses.replace(dependencies, storage=MeteredStorage(dependencies.storage, metrics),
                               model=MeteredModel(dependencies.model, metrics),
                               completions=MeteredCompletions(dependencies.completions, metrics))


def instrument_dead_letters(store: DeadLetterStore) -> DeadLetterStore:
    metrics = _metrics
    return store if metrics is None else MeteredDeadLetters(store, metrics)


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

    def child_exited(pid: int | None = None, **_: Any) -> None:
        path = os.environ.get(MULTIPROC_ENV)
        if path and pid:
            mark_process_dead(pid, path)

    for signal, receiver in ((signals.task_prerun, prerun), (signals.task_postrun, postrun),
                             (signals.task_retry, retried), (signals.task_success, succeeded),
                             (signals.worker_process_shutdown, child_exited),
                             (lifecycle.segment_entered, entered), (lifecycle.segment_left, left)):
        # One set per process: a second worker started in it (tests) replaces the first one's.
        signal.connect(receiver, weak=False, dispatch_uid=f"video_worker.metrics.{receiver.__name__}")


class MetricsEndpoint(bootsteps.StartStopStep):
    """Worker bootstep (``METRICS_PORT``): the series are made before the pool forks (``create``), the HTTP
    server starts in the main process once the pool runs (``start``). A port in use stops the worker at once."""

    requires = ("celery.worker.components:Pool",)

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.port: int | None = worker.app.settings.metrics_port
        self.enabled = self.port is not None
        self.registry: CollectorRegistry | None = None
        self.server: Any = None

    def create(self, worker: Any) -> None:
        settings, port = worker.app.settings, self.port
        assert port is not None
        with socket.socket() as probe:  # fail before any process is forked, with one line
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("", port))
            except OSError as exc:
                print(f"video-worker: METRICS_PORT {port}: {exc.strerror}", file=sys.__stderr__, flush=True)
                os._exit(2)
        path, ours = multiprocess_dir(settings, port)
        if upstream.is_prefork(worker) or not ours:
            clean(path, ours)
            self.registry = enable(path)
        else:
            self.registry = enable(None)
        assert _metrics is not None
        connect(_metrics)

    def start(self, worker: Any) -> None:
        assert self.port is not None and self.registry is not None
        self.server, _thread = start_http_server(self.port, registry=self.registry)
        log.info("metrics on :%d/metrics%s", self.port, " (multiprocess)" if os.environ.get(MULTIPROC_ENV) else "")

    def stop(self, worker: Any) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def terminate(self, worker: Any) -> None:
        self.stop(worker)
