"""The worker's log format: ``LOG_FORMAT=json`` lines carry the running stage's task id and segment.

Celery sets up the worker's logging itself and then sends
``after_setup_logger`` (the root logger) and ``after_setup_task_logger``
(``celery.task``), also in prefork children; ``install`` connects both so each
handler gets a ``logs.JsonFormatter`` whose context is the running task
(Celery's current task: the stage chain affinity runs is current too, its
tracer pushes it). ``Worker`` is Celery's worker application
(``celery.apps.worker.Worker``) whose start-up banner, printed to stdout, is
one log line instead in JSON mode (``app.Worker``, ``VideoWorkerApp``), and
Celery's shutdown notices, printed too, are JSON objects
(``upstream.print_shutdown_notices_with``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

from celery import signals

from video_worker import logs
from video_worker.errors import ConfigError
from video_worker.stages import STAGE_NAMES
from video_worker.worker import upstream

log = logging.getLogger("celery.worker")


def running_task() -> dict[str, Any]:
    """The running task's id and stage, and the segment its payload names, or nothing outside a task."""
    task = upstream.current_task_object()
    request = getattr(task, "request", None)
    if task is None or request is None or not request.id:
        return {}
    fields: dict[str, Any] = {"task_id": request.id,
                              "stage": task.name.rsplit(".", 1)[-1] if task.name in STAGE_NAMES else task.name}
    args = request.args or ()
    fields.update(logs.segment_of(args[0] if args else None))
    return fields


def install(log_format: Callable[[], str]) -> None:
    """Give Celery's log handlers the JSON format when ``LOG_FORMAT=json`` (``default_app``)."""

    def json_handlers(logger: logging.Logger | None = None, **_: Any) -> None:
        if logger is not None and log_format() == "json":
            logs.use_format("json", logger, context=running_task)
            logging.captureWarnings(True)  # Python's warnings as log lines too, not bare text on stderr
            # Celery prints its shutdown notices (``worker: Warm shutdown``) from signal handlers; printed as
            # JSON objects instead (a print: no logging lock in a handler).
            upstream.print_shutdown_notices_with(say_as_json)

    for signal in (signals.after_setup_logger, signals.after_setup_task_logger):
        signal.connect(json_handlers, weak=False)


def say_as_json(message: str, f: Any = None) -> None:
    """``celery.apps.worker.safe_say`` with the line as a JSON object."""
    line = logs.JsonFormatter().format(logging.makeLogRecord({"name": "celery.apps.worker", "levelname": "WARNING",
                                                              "levelno": logging.WARNING, "msg": message}))
    print(line, file=f or sys.__stderr__, flush=True)


class Worker(upstream.HookedWorker):
    """``celery.apps.worker.Worker`` whose banner is one log line in JSON mode (a log collector's lines)."""

    def before_logging(self) -> None:
        """In JSON mode, what is logged or warned before Celery sets up logging (running as root) is JSON too."""
        try:
            json_mode = self.app.settings.log_format == "json"
        except ConfigError:
            json_mode = False  # Celery reports the configuration's problem in one line
        if json_mode:
            early = logging.StreamHandler()
            early.setFormatter(logs.JsonFormatter())
            logging.getLogger().addHandler(early)  # Celery replaces the root's handlers when it sets up
            logging.captureWarnings(True)

    def banner_as_one_line(self) -> bool:
        return bool(self.app.settings.log_format == "json")

    def log_banner(self, info: str) -> None:
        log.info("%s", info)
