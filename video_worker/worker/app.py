"""The Celery application class: ``VideoWorkerApp`` owns its ``Settings`` and, per process, its resources.

What it runs and how is assembled in ``video_worker/celery_app.py``
(``create_app``: the tasks, the bootsteps table, the monitoring pieces).
Static Celery policy (JSON only, late acks, ...) comes from the top-level
``celeryconfig`` module; deployment settings (broker, queue names,
concurrency, monitoring) come from ``Settings``, built from the environment
the first time the configuration is needed, i.e. when the worker starts, not
at import.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cached_property
from typing import Any

from celery import Celery

from video_worker.errors import ConfigError
from video_worker.per_process import PerProcess
from video_worker.settings import Settings, load_settings
from video_worker.worker.context import ProcessContext
from video_worker.worker.dead_letters import DeadLetterWriter
from video_worker.worker.logs import Worker
from video_worker.worker.metrics.series import WorkerMetrics
from video_worker.worker.stage_events import BUFFER_LIMIT


def symbol_path(obj: Any) -> str:
    """``module:name`` of a class, for the Celery settings that take one by name (from an imported class, so
    the dependency is an import that the layer contracts see)."""
    return f"{obj.__module__}:{obj.__qualname__}"


class VideoWorkerApp(Celery):
    """A Celery app that owns its ``Settings`` and, per process, its ``ProcessContext``."""

    #: Celery's hard time limit where the pool does not enforce it (threads, solo; 0: none), set at worker
    #: start (``steps/process_start.py``); None under prefork, whose pool enforces it (``lifecycle.time_limit``).
    celery_time_limit: float | None = None
    #: The worker's metrics (``METRICS_PORT``; set by ``steps/metrics_endpoint.py`` before the pool forks).
    metrics: WorkerMetrics | None = None
    #: Writes this app's dead letters (set by ``create_app``; the consumer's too).
    dead_letter_writer: DeadLetterWriter

    def __init__(self, settings: Settings | None, deployment_conf: Callable[[Settings], dict[str, Any]],
                 **kwargs: Any) -> None:
        kwargs.setdefault("set_as_current", False)
        super().__init__("video_worker", **kwargs)
        self._settings = settings
        self._conf_of = deployment_conf
        self._context: PerProcess[ProcessContext] = PerProcess(
            lambda: ProcessContext(self.settings, self._new_dispatcher, self.metrics))
        self.config_from_object("celeryconfig")
        self.add_defaults(self._deployment_conf)

    def _deployment_conf(self) -> dict[str, Any]:
        try:
            return self._conf_of(self.settings)
        except ConfigError as exc:
            if "celery.bin.celery" in sys.modules:  # under the `celery` CLI: one line, no traceback
                raise SystemExit(f"video-worker: {exc}") from None
            raise

    @cached_property
    def Worker(self) -> Any:
        """Celery's worker application, with the start-up banner as one log line in JSON mode (``worker/logs``)."""
        return self.subclass_with_self(Worker)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def context(self) -> ProcessContext:
        """This process's resources (built on first use in each process)."""
        return self._context.get()

    def _new_dispatcher(self, hostname: str | None) -> Any:
        if not self.conf.worker_send_task_events:
            return None
        return self.events.Dispatcher(self.connection_for_write(), hostname=hostname, buffer_group=["task"],
                                      buffer_limit=BUFFER_LIMIT)
