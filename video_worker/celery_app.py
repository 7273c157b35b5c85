"""The Celery app, assembled: ``create_app`` wires the pipeline's tasks, the bootsteps table and monitoring.

``celery -A video_worker worker`` finds ``video_worker.app`` (built on first
access by ``default_app``, see ``video_worker/__init__.py``). This module sits
above both ``worker/`` (the tasks, the stage lifecycle, chain affinity, the
consumer) and ``monitoring/`` (Flower and ``celery inspect`` over SQS), and
imports what it wires from each: nothing is named by a string that the layer
contracts cannot see. Every bootstep added to Celery's is listed in
``WORKER_STEPS`` and ``CONSUMER_STEPS``, one per file, as Celery lists its own
(``celery/worker/consumer/__init__.py``).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from celery.signals import worker_process_init

from video_worker.monitoring.batching import EventBatching
from video_worker.monitoring.transport import Control as MonitoringControl
from video_worker.monitoring.transport import Transport as MonitoringTransport
from video_worker.settings import Settings
from video_worker.worker import logs as worker_logs
from video_worker.worker import tasks
from video_worker.worker import transport as worker_transport
from video_worker.worker.affinity import ChainAffinity
from video_worker.worker.app import VideoWorkerApp, symbol_path
from video_worker.worker.chain import build_chain
from video_worker.worker.consumer import Consumer
from video_worker.worker.dead_letters import DeadLetterWriter
from video_worker.worker.lifecycle import StageLifecycle
from video_worker.worker.steps.metrics_endpoint import MetricsEndpoint
from video_worker.worker.steps.process_start import ProcessStart, init_process
from video_worker.worker.steps.visibility_heartbeat import VisibilityHeartbeat

#: The worker's own bootsteps (``celery.worker.components``): check and start the process, serve the metrics.
WORKER_STEPS = (
    ProcessStart,  # steps/process_start.py: the model can be built here; threads/solo: build the resources now
    MetricsEndpoint,  # steps/metrics_endpoint.py: METRICS_PORT, series made before the pool forks
)
#: The consumer's bootsteps (``celery.worker.consumer``).
CONSUMER_STEPS = (
    VisibilityHeartbeat,  # steps/visibility_heartbeat.py: held SQS messages stay invisible while held
    EventBatching,  # monitoring/batching.py: task events flushed once a second, not once per event
)


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
        "worker_consumer": symbol_path(Consumer),
        # Events and remote control over SNS (Flower, celery inspect), or none of it.
        "worker_enable_remote_control": monitoring,
        "worker_send_task_events": monitoring,
        "task_send_sent_event": monitoring,
    }
    if urlsplit(settings.broker_url).scheme == "sqs":
        conf["broker_transport"] = symbol_path(MonitoringTransport if monitoring else worker_transport.Transport)
    return conf


def create_app(settings: Settings | None = None) -> VideoWorkerApp:
    """A new app with the pipeline's tasks and bootsteps registered."""
    # One reply queue per process and thread, a fresh mailbox queue per worker start (SQS-friendly).
    app = VideoWorkerApp(settings, celery_conf, control=MonitoringControl)
    # What the stage lifecycle needs, passed in once: the settings and this process's resources are read when
    # first needed (the worker's start, and each prefork child's own).
    app.dead_letter_writer = DeadLetterWriter(lambda: app.context.dead_letters,
                                              lambda: app.settings.publish_patience_seconds)
    affinity = ChainAffinity(app, lambda: app.settings, app.dead_letter_writer,
                             lambda hostname: app.context.stage_events(hostname))
    lifecycle = StageLifecycle(lambda: app.settings, lambda: app.context.dependencies, app.dead_letter_writer,
                               affinity, lambda: app.celery_time_limit, lambda segment: build_chain(segment, app))
    tasks.register(app, lifecycle)
    for step in WORKER_STEPS:
        app.steps["worker"].add(step)
    for step in CONSUMER_STEPS:
        app.steps["consumer"].add(step)
    return app


def default_app() -> VideoWorkerApp:
    """The app of ``celery -A video_worker``; its prefork children build their context when they start."""
    app = create_app()
    worker_process_init.connect(lambda **_: init_process(app), weak=False)
    worker_logs.install(lambda: app.settings.log_format)
    return app
