"""The Celery application.

``celery -A video_worker worker`` finds ``video_worker.app``. Static Celery
policy (JSON only, late acks, ...) comes from the top-level ``celeryconfig``
module; deployment settings (broker, queue names, concurrency) come from
``Settings``, which is built from the environment the first time the
configuration is needed, i.e. when the worker starts, not at import.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from typing import Any

from celery import Celery
from celery.canvas import Signature, chain

from video_worker.deadletters import DeadLetterQueue
from video_worker.errors import ConfigError
from video_worker.monitoring import monitoring_conf
from video_worker.monitoring.batching import BUFFER_LIMIT, EventBatching, StageEvents
from video_worker.payloads import VideoWorkerPayload
from video_worker.pipeline import Runtime
from video_worker.settings import Settings, load_settings

TASK_NAMES = (
    "video_worker.download",
    "video_worker.infer",
    "video_worker.upload",
    "video_worker.record",
)
ENTRY_TASK = "video_worker.process"


def celery_conf(settings: Settings) -> dict[str, Any]:
    """The Celery settings that depend on the deployment."""
    options: dict[str, Any] = {
        "region": settings.aws_region,
        "queue_name_prefix": settings.broker_queue_prefix,
        "is_secure": settings.broker_is_secure,
        "wait_time_seconds": settings.broker_wait_time_seconds,
        "polling_interval": settings.broker_polling_interval,
        "visibility_timeout": settings.broker_visibility_timeout,
    }
    return {
        "broker_url": settings.broker_url,
        "broker_transport_options": options,
        "task_default_queue": settings.task_queue,
        "worker_pool": settings.worker_pool,
        "worker_concurrency": settings.worker_concurrency,
        "worker_prefetch_multiplier": settings.worker_prefetch_multiplier,
        # Task messages that cannot be run are dead-lettered, not dropped or crashed on.
        "worker_consumer": "video_worker.consumer:Consumer",
        **monitoring_conf(settings),
    }


class VideoWorkerApp(Celery):
    """A Celery app that owns its ``Settings`` and, per process, its ``Runtime``."""

    # One reply queue per process and thread, a fresh mailbox queue per worker start (SQS-friendly).
    control_cls = "video_worker.monitoring.control:Control"

    def __init__(self, settings: Settings | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("set_as_current", False)
        super().__init__("video_worker", **kwargs)
        self._settings = settings
        self._process_cache: dict[str, tuple[int, Any]] = {}
        self._process_lock = threading.RLock()
        #: (pid, the consumer's event dispatcher), set by ``monitoring.batching.EventBatching``.
        self.worker_events: tuple[int, Any] | None = None
        self.config_from_object("celeryconfig")
        self.add_defaults(self._deployment_conf)

    def _deployment_conf(self) -> dict[str, Any]:
        try:
            return celery_conf(self.settings)
        except ConfigError as exc:
            if "celery.bin.celery" in sys.modules:  # under the `celery` CLI: one line, no traceback
                raise SystemExit(f"video-worker: {exc}") from None
            raise

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    def _per_process(self, key: str, build: Callable[[], Any]) -> Any:
        """``build()`` once per process (clients must not cross a prefork fork), once for all threads."""
        cached = self._process_cache.get(key)
        if cached is None or cached[0] != os.getpid():
            with self._process_lock:
                cached = self._process_cache.get(key)
                if cached is None or cached[0] != os.getpid():
                    cached = self._process_cache[key] = (os.getpid(), build())
        return cached[1]

    @property
    def runtime(self) -> Runtime:
        """The stages' dependencies, built lazily in each (forked) worker process."""
        from video_worker.runtime import build_runtime

        runtime: Runtime = self._per_process("runtime", lambda: build_runtime(self.settings))
        return runtime

    @property
    def dead_letters(self) -> DeadLetterQueue:
        """Where chains that failed for good go (per process, like ``runtime``)."""
        from video_worker.runtime import build_dead_letters

        queue: DeadLetterQueue = self._per_process("dead_letters", lambda: build_dead_letters(self.settings))
        return queue

    def stage_events(self, hostname: str | None) -> StageEvents:
        """Where ``affinity`` sends the events of the stages it runs.

        In the worker's main process (threads or solo pool), the consumer's own
        dispatcher, flushed in batches; in a prefork child, one of its own.
        """
        if self.worker_events is not None and self.worker_events[0] == os.getpid():
            return StageEvents(self.worker_events[1], batched=True)
        if not self.conf.worker_send_task_events:
            return StageEvents(None, batched=False)
        dispatcher = self._per_process("stage_events", lambda: self.events.Dispatcher(
            self.connection_for_write(), hostname=hostname, buffer_group=["task"], buffer_limit=BUFFER_LIMIT))
        return StageEvents(dispatcher, batched=False)

    def use_runtime(self, runtime: Runtime) -> None:
        """Inject dependencies (tests, embedding)."""
        self._process_cache["runtime"] = (os.getpid(), runtime)


def create_app(settings: Settings | None = None) -> VideoWorkerApp:
    """A new app with the pipeline's tasks registered."""
    from video_worker import tasks
    from video_worker.refill import SlotRefill
    from video_worker.visibility import VisibilityHeartbeat

    app = VideoWorkerApp(settings)
    tasks.register(app)
    app.steps["consumer"].add(VisibilityHeartbeat)
    app.steps["consumer"].add(EventBatching)
    app.steps["consumer"].add(SlotRefill)
    return app


def build_chain(payload: VideoWorkerPayload, app: Celery | None = None) -> Signature:
    """The whole ``download → infer → upload → record`` chain for one segment.

    Signatures are built by task name, so any Celery app configured for the
    same broker can publish it: ``build_chain(payload, app).apply_async()``.
    """
    from video_worker import app as default_app

    target = app or default_app
    first = target.signature(TASK_NAMES[0], args=(payload.model_dump(mode="json"),))
    return chain(first, *(target.signature(name) for name in TASK_NAMES[1:]))
