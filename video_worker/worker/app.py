"""The Celery application: ``create_app`` wires the pipeline's tasks, bootsteps and per-process context.

``celery -A video_worker worker`` finds ``video_worker.app`` (built on first
access, see ``video_worker/__init__.py``). Static Celery policy (JSON only,
late acks, ...) comes from the top-level ``celeryconfig`` module; deployment
settings (broker, queue names, concurrency, monitoring) come from
``Settings``, built from the environment the first time the configuration is
needed, i.e. when the worker starts, not at import. Monitoring's transport,
mailbox and event batching are named here, not imported: they extend this
package (``video_worker/monitoring``).
"""

from __future__ import annotations

import sys
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

from celery import Celery
from celery.signals import worker_process_init

from video_worker.errors import ConfigError
from video_worker.per_process import PerProcess
from video_worker.settings import Settings, load_settings
from video_worker.worker import logs as worker_logs
from video_worker.worker import tasks
from video_worker.worker.affinity import ChainAffinity
from video_worker.worker.chain import build_chain
from video_worker.worker.context import ProcessContext, ProcessStart, init_process
from video_worker.worker.dead_letters import DeadLetterWriter
from video_worker.worker.heartbeat import VisibilityHeartbeat
from video_worker.worker.lifecycle import StageLifecycle
from video_worker.worker.metrics import MetricsEndpoint
from video_worker.worker.stage_events import BUFFER_LIMIT
from video_worker.worker.transport import TRANSPORT as PLAIN_TRANSPORT

MONITORING_TRANSPORT = "video_worker.monitoring.transport:Transport"
MONITORING_CONTROL = "video_worker.monitoring.control:Control"
EVENT_BATCHING = "video_worker.monitoring.batching:EventBatching"


def monitoring_enabled(settings: Settings) -> bool:
    return settings.monitoring and urlsplit(settings.broker_url).scheme == "sqs"


def celery_conf(settings: Settings) -> dict[str, Any]:
    """The Celery settings that depend on the deployment."""
    monitoring = monitoring_enabled(settings)
    options: dict[str, Any] = {
        "region": settings.aws_region,
        "queue_name_prefix": settings.broker_queue_prefix,
        "is_secure": settings.broker_is_secure,
        "wait_time_seconds": settings.broker_wait_time_seconds,
        "polling_interval": settings.broker_polling_interval,
        "visibility_timeout": settings.broker_visibility_timeout,
    }
    if settings.aws_endpoint_url_sns:  # else SNS (monitoring's fanout) follows the broker's endpoint
        options["sns_endpoint_url"] = settings.aws_endpoint_url_sns
    conf: dict[str, Any] = {
        "broker_url": settings.broker_url,
        "broker_transport_options": options,
        "task_default_queue": settings.task_queue,
        "worker_pool": settings.worker_pool,
        "worker_concurrency": settings.worker_concurrency,
        "worker_prefetch_multiplier": settings.worker_prefetch_multiplier,
        # Task messages that cannot be run are dead-lettered, not dropped or crashed on.
        "worker_consumer": "video_worker.worker.consumer:Consumer",
        # Events and remote control over SNS (Flower, celery inspect), or none of it.
        "worker_enable_remote_control": monitoring,
        "worker_send_task_events": monitoring,
        "task_send_sent_event": monitoring,
    }
    if urlsplit(settings.broker_url).scheme == "sqs":
        conf["broker_transport"] = MONITORING_TRANSPORT if monitoring else PLAIN_TRANSPORT
    return conf


class VideoWorkerApp(Celery):
    """A Celery app that owns its ``Settings`` and, per process, its ``ProcessContext``."""

    # One reply queue per process and thread, a fresh mailbox queue per worker start (SQS-friendly).
    control_cls = MONITORING_CONTROL
    #: Celery's hard time limit where the pool does not enforce it (threads, solo; 0: none), set at worker
    #: start (``context.ProcessStart``); None under prefork, whose pool enforces it (``lifecycle.time_limit``).
    celery_time_limit: float | None = None
    #: Writes this app's dead letters (set by ``create_app``; the consumer's too).
    dead_letter_writer: DeadLetterWriter

    def __init__(self, settings: Settings | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("set_as_current", False)
        super().__init__("video_worker", **kwargs)
        self._settings = settings
        self._context: PerProcess[ProcessContext] = PerProcess(
            lambda: ProcessContext(self.settings, self._new_dispatcher))
        self.config_from_object("celeryconfig")
        self.add_defaults(self._deployment_conf)

    def _deployment_conf(self) -> dict[str, Any]:
        try:
            return celery_conf(self.settings)
        except ConfigError as exc:
            if "celery.bin.celery" in sys.modules:  # under the `celery` CLI: one line, no traceback
                raise SystemExit(f"video-worker: {exc}") from None
            raise

    @cached_property
    def Worker(self) -> Any:
        """Celery's worker application, with the start-up banner as one log line in JSON mode (``worker/logs``)."""
        return self.subclass_with_self("video_worker.worker.logs:Worker")

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


def create_app(settings: Settings | None = None) -> VideoWorkerApp:
    """A new app with the pipeline's tasks and bootsteps registered."""
    app = VideoWorkerApp(settings)
    # What the stage lifecycle needs, passed in once: the settings and this process's resources are read when
    # first needed (the worker's start, and each prefork child's own).
    app.dead_letter_writer = DeadLetterWriter(lambda: app.context.dead_letters,
                                              lambda: app.settings.publish_patience_seconds)
    affinity = ChainAffinity(app, lambda: app.settings, app.dead_letter_writer,
                             lambda hostname: app.context.stage_events(hostname))
    lifecycle = StageLifecycle(lambda: app.settings, lambda: app.context.dependencies, app.dead_letter_writer,
                               affinity, lambda: app.celery_time_limit, lambda segment: build_chain(segment, app))
    tasks.register(app, lifecycle)
    app.steps["worker"].add(ProcessStart)
    app.steps["worker"].add(MetricsEndpoint)  # METRICS_PORT
    app.steps["consumer"].add(VisibilityHeartbeat)
    app.steps["consumer"].add(EVENT_BATCHING)
    return app


def default_app() -> VideoWorkerApp:
    """The app of ``celery -A video_worker``; its prefork children build their context when they start."""
    app = create_app()
    worker_process_init.connect(lambda **_: init_process(app), weak=False)
    worker_logs.install(lambda: app.settings.log_format)
    return app
