"""A worker process's resources, built once per process: the one place clients and the model are made.

``ProcessContext`` holds the stages' ``Dependencies`` (S3, DynamoDB, the
scratch directory, the model runner), the dead-letter store and the stage
events. Each part is built on first use; ``start()`` builds the dependencies
at once, so the model is loaded and warmed up before the first segment. It is
called by ``steps.process_start.init_process``, the one per-process hook:
Celery's ``worker_process_init`` in prefork children, the ``ProcessStart``
bootstep in a threads or solo worker. Callers that need only the dead letters
(``dlq`` commands) never start a model. With ``METRICS_PORT`` the dependencies
and the dead-letter store are metered (``metrics/metered.py``).
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from video_worker.adapters.aws import make_client
from video_worker.adapters.dynamodb import DynamoCompletionStore
from video_worker.adapters.model_process import InlineRunner, ProcessRunner
from video_worker.adapters.s3 import S3Storage
from video_worker.adapters.scratch import ScratchDir, start_sweeping
from video_worker.adapters.sqs import dead_letter_store
from video_worker.inference import load_model
from video_worker.ports import DeadLetterStore, ModelRunner
from video_worker.settings import Settings
from video_worker.stages import Dependencies
from video_worker.worker.metrics.metered import instrument, instrument_dead_letters
from video_worker.worker.metrics.series import WorkerMetrics
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


class ProcessContext:
    """This process's resources (see the module's doc); thread-safe, each part built once."""

    def __init__(self, settings: Settings, new_dispatcher: Callable[[str | None], Any] | None = None,
                 metrics: WorkerMetrics | None = None) -> None:
        self.settings = settings
        self._new_dispatcher = new_dispatcher
        self._metrics = metrics
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
        return self._part("dependencies", lambda: instrument(build_dependencies(self.settings), self._metrics))

    @property
    def dead_letters(self) -> DeadLetterStore:
        return self._part("dead_letters", lambda: instrument_dead_letters(dead_letter_store(self.settings),
                                                                                self._metrics))

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
