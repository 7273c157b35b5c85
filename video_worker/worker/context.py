"""A worker process's resources, built once per process: the one place clients and the model are made.

``ProcessContext`` holds the stages' ``Dependencies`` (S3, DynamoDB, the
scratch directory, the model runner), the dead-letter store and the stage
events. Each part is built on first use; ``start()`` builds the dependencies
at once, so the model is loaded and warmed up before the first segment. It is
called by ``init_process``, the one per-process hook: Celery's
``worker_process_init`` in prefork children, the ``ProcessStart`` bootstep in
a threads or solo worker. Callers that need only the dead letters (``dlq``
commands) never start a model.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from celery import bootsteps

from video_worker.adapters.aws import make_client
from video_worker.adapters.dynamodb import DynamoCompletionStore
from video_worker.adapters.model_process import InlineRunner, ProcessRunner
from video_worker.adapters.s3 import S3Storage
from video_worker.adapters.scratch import ScratchDir, start_sweeping
from video_worker.adapters.sqs import SqsDeadLetters
from video_worker.errors import ConfigError
from video_worker.inference import check_model, load_model
from video_worker.ports import DeadLetterStore, ModelRunner
from video_worker.settings import Settings
from video_worker.stages import Dependencies
from video_worker.worker import upstream
from video_worker.worker.metrics import instrument, instrument_dead_letters
from video_worker.worker.stage_events import StageEvents

log = logging.getLogger(__name__)

T = TypeVar("T")


def build_model_runner(settings: Settings) -> ModelRunner:
    """The model, in its own processes (started and warmed up now) or in this one."""
    if settings.model_isolation == "inline":
        return InlineRunner(load_model(settings.model, settings), settings.infer_concurrency)
    runner = ProcessRunner(settings, settings.infer_concurrency, start_timeout=settings.model_start_timeout_seconds)
    atexit.register(runner.close)
    runner.start()
    return runner


def build_dependencies(settings: Settings) -> Dependencies:
    scratch = ScratchDir(settings.scratch_dir)
    start_sweeping(scratch, settings.scratch_max_age_seconds)
    aws = settings.aws
    return Dependencies(
        storage=S3Storage(make_client("s3", aws), chunk_mib=settings.transfer_chunk_mib,
                          threads=settings.transfer_threads),
        completions=DynamoCompletionStore(make_client("dynamodb", aws), settings.segment_completions_table_name),
        model=build_model_runner(settings),
        model_name=settings.model,
        scratch=scratch,
        output_bucket=settings.output_bucket_name,
        max_segment_bytes=settings.max_segment_bytes,
        context_wait_seconds=settings.context_wait_seconds,
    )


def build_dead_letters(settings: Settings) -> DeadLetterStore:
    """``VIDEO_WORKER_DLQ_URL``, or the queue ``{BROKER_QUEUE_PREFIX}dead-letters`` (created if missing)."""
    sqs = make_client("sqs", settings.aws)
    if settings.video_worker_dlq_url:
        return SqsDeadLetters(sqs, settings.video_worker_dlq_url)
    return SqsDeadLetters.named(sqs, f"{settings.broker_queue_prefix}dead-letters")


class ProcessContext:
    """This process's resources (see the module's doc); thread-safe, each part built once."""

    def __init__(self, settings: Settings, new_dispatcher: Callable[[str | None], Any] | None = None) -> None:
        self.settings = settings
        self._new_dispatcher = new_dispatcher
        self._lock = threading.RLock()
        self._parts: dict[str, Any] = {}
        #: The worker's own event dispatcher, flushed in batches (set by ``monitoring.batching.EventBatching``
        #: in a threads or solo worker); a prefork child makes one of its own.
        self.worker_events: Any | None = None

    def _part(self, name: str, build: Callable[[], T]) -> T:
        with self._lock:
            if name not in self._parts:
                self._parts[name] = build()
            return self._parts[name]  # type: ignore[no-any-return]

    @property
    def dependencies(self) -> Dependencies:
        return self._part("dependencies", lambda: instrument(build_dependencies(self.settings)))

    @property
    def dead_letters(self) -> DeadLetterStore:
        return self._part("dead_letters", lambda: instrument_dead_letters(build_dead_letters(self.settings)))

    def use(self, **parts: Any) -> None:
        """Inject parts (``dependencies``, ``dead_letters``): tests, embedding."""
        with self._lock:
            self._parts.update(parts)

    def stage_events(self, hostname: str | None) -> StageEvents:
        """Where chain affinity sends the events of the stages it runs."""
        if self.worker_events is not None:
            return StageEvents(self.worker_events, batched=True)
        if self._new_dispatcher is None:
            return StageEvents(None, batched=False)
        return StageEvents(self._part("dispatcher", lambda: self._new_dispatcher(hostname)),  # type: ignore[misc]
                           batched=False)

    def start(self) -> None:
        """Build the dependencies now: the model is loaded and warmed up before the first segment."""
        self.dependencies  # noqa: B018
        log.info("worker process ready: model %s (%s)", self.settings.model, self.settings.model_isolation)


class ProcessStart(bootsteps.StartStopStep):
    """Worker bootstep: check that the model can be built here (its extra, its settings), then, in a threads
    or solo worker, build the process's resources before consuming. A problem stops the worker with one line."""

    requires = ("celery.worker.components:Pool",)

    def start(self, worker: Any) -> None:
        # Celery's current app is per thread and the threads pool's threads have none: integrations that look
        # tasks up by name (OpenTelemetry's publish spans) would find the default app's, not ours.
        worker.app.set_default()
        prefork = upstream.is_prefork(worker)
        if not prefork:
            # Prefork kills a process at Celery's hard limit itself; the threads and solo pools enforce none:
            # there each stage's deadline takes it (``lifecycle.StageLifecycle.time_limit``). ``--time-limit`` or
            # ``task_time_limit``.
            worker.app.celery_time_limit = upstream.hard_time_limit(worker)
        try:
            check_model(worker.app.settings.model)
            if not prefork:
                init_process(worker.app)
        except ConfigError as exc:
            print(f"video-worker: {exc}", file=sys.__stderr__, flush=True)  # not Celery's logging proxy
            os._exit(2)  # before Celery's pool and consumer start: nothing to shut down


def init_process(app: Any) -> None:
    """The one per-process initialisation hook (see the module's doc)."""
    app.context.start()
