"""Consumer bootstep ``VisibilityHeartbeat``: the SQS messages of running and reserved tasks stay invisible.

The broker's visibility timeout (``BROKER_VISIBILITY_TIMEOUT``, default 120 s)
is short, so a message held by a worker that dies (SIGKILL, spot reclaim)
becomes visible again within two minutes. While the worker lives, this
consumer bootstep extends the visibility of every message it holds, running
or waiting for a pool slot (prefetched), every quarter of the timeout, so a
GPU inference of many minutes is never handed to a second worker. The
extension stops, with an error in the log, once a message has been held
longer than its stages' time limits allow (``STAGE_TIME_LIMITS`` summed, plus
the publish patience and a margin: a stage stuck past every bound) or near
SQS's cap of 12 hours from its first receipt; SQS then hands it out again.

Only the worker's main process talks to SQS here, with its own boto3 client.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

from celery import bootsteps

from video_worker.adapters.aws import make_client
from video_worker.adapters.sqs import SqsQueue
from video_worker.errors import VideoWorkerError
from video_worker.worker import transport, upstream

log = logging.getLogger(__name__)

MAX_HOLD_SECONDS = 12 * 3600 - 600  # SQS: 12 h from the first receipt, minus a margin
HOLD_MARGIN_SECONDS = 600


def held_messages(requests: Iterable[Any]) -> dict[str, list[tuple[str, str]]]:
    """Queue URL → [(id, receipt handle)] of the SQS messages behind ``requests``."""
    by_queue: dict[str, list[tuple[str, str]]] = {}
    for request in requests:
        message = getattr(request, "message", None)
        info = getattr(message, "delivery_info", None) or {}
        queue_url = info.get("sqs_queue")
        receipt = getattr(message, "delivery_tag", None)
        if queue_url and receipt:
            by_queue.setdefault(str(queue_url), []).append((str(request.id), str(receipt)))
    return by_queue


class VisibilityHeartbeat(bootsteps.StartStopStep):
    """Consumer bootstep: periodically extend the visibility of every held message."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer_entry: Any = None
        self._first_seen: dict[str, float] = {}
        self._sqs: Any = None
        self.max_hold: float = MAX_HOLD_SECONDS

    def start(self, parent: Any) -> None:
        settings = parent.app.settings
        self.timeout = settings.broker_visibility_timeout
        bound = sum(settings.stage_time_limits.values()) + 2 * settings.publish_patience_seconds
        self.max_hold = min(MAX_HOLD_SECONDS, bound + HOLD_MARGIN_SECONDS)
        self._sqs = make_client("sqs", settings.aws)
        interval = max(1.0, self.timeout / 4)
        self._timer_entry = parent.timer.call_repeatedly(interval, self.beat)
        log.info("visibility heartbeat: every %.0fs, timeout %ds", interval, self.timeout)
        self._check_queue_timeouts(parent)

    def _check_queue_timeouts(self, parent: Any) -> None:
        """Warn when a broker queue was created with another visibility timeout.

        SQS applies the queue's own timeout to each receive (kombu passes none);
        the first heartbeat corrects each message, but until then a dead
        worker's message stays hidden for the queue's timeout.
        """
        channel = parent.connection.default_channel
        for queue in upstream.consumed_queues(parent.app):
            try:
                actual = SqsQueue(self._sqs, transport.queue_url(channel, queue.name), queue.name).visibility_timeout()
            except Exception as exc:  # informative only
                log.debug("could not read the visibility timeout of %s: %s", queue.name, exc)
                continue
            if actual != self.timeout:
                log.warning("broker queue %s has VisibilityTimeout %ds but BROKER_VISIBILITY_TIMEOUT is %ds; "
                            "set the same value on every process (or the queue attribute)",
                            queue.name, actual, self.timeout)

    def stop(self, parent: Any) -> None:
        if self._timer_entry is not None:
            self._timer_entry.cancel()
            self._timer_entry = None

    def beat(self) -> None:
        now = time.monotonic()
        held = held_messages(upstream.held_requests())
        live = {task_id for entries in held.values() for task_id, _ in entries}
        for task_id in list(self._first_seen):
            if task_id not in live:
                del self._first_seen[task_id]
        for queue_url, entries in held.items():
            receipts: list[str] = []
            for task_id, receipt in entries:
                first = self._first_seen.setdefault(task_id, now)
                if now - first + self.timeout > self.max_hold:
                    log.error("task %s held for %.0fs, past what its stages' time limits allow (%.0fs): no longer "
                              "extended, SQS hands it out again", task_id, now - first, self.max_hold)
                    continue
                receipts.append(receipt)
            try:  # a failure: the next beat tries again; the message may be redelivered meanwhile
                failures = SqsQueue(self._sqs, queue_url).extend_visibility(receipts, self.timeout) if receipts else []
            except VideoWorkerError as exc:
                failures = [str(exc)]
            for failure in failures:
                log.warning("visibility heartbeat: %s", failure)
