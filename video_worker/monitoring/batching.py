"""Task events in batches: one SNS message a second per worker, not one per event.

Celery's worker buffers task events (``buffer_group=['task']`` when it has an
event loop) but flushes the buffer on the next turn of the loop
(``celery/worker/consumer/consumer.py`` ``Consumer.on_send_event_buffered``),
which over SNS is one ``Publish`` per event or two: ≈ 15 requests per segment,
more than the segment's own work, and each ``task-received`` publish delayed
the task's start by a round trip. ``EventBatching`` flushes on a timer instead
(and when ``BUFFER_LIMIT`` events are waiting: an SNS message holds 256 KiB).
Flower and ``celery events`` show a task's events up to ``FLUSH_SECONDS`` late,
with the times they happened. Heartbeats (``worker`` group) are not buffered.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

from video_worker.worker import upstream
from video_worker.worker.stage_events import BUFFER_LIMIT

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0


class EventBatching(bootsteps.StartStopStep):
    """Consumer step: flush the worker's buffered task events every ``FLUSH_SECONDS``."""

    requires = ("celery.worker.consumer.events:Events",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        self._timer: Any = None
        self._flush: Any = None
        super().__init__(c, **kwargs)

    def start(self, c: Any) -> None:
        self._cancel()
        if c.hub is None:
            return
        flush = upstream.flush_on_timer(c, BUFFER_LIMIT)
        if flush is None:
            return
        self._timer = c.hub.call_repeatedly(FLUSH_SECONDS, flush)
        self._flush = flush
        c.app.context.worker_events = c.event_dispatcher

    def stop(self, c: Any) -> None:
        self._cancel()
        if self._flush is not None:
            try:
                self._flush()
            except Exception as exc:  # the broker is gone: Celery keeps them buffered
                log.warning("monitoring: could not flush task events at stop: %s", exc)

    def shutdown(self, c: Any) -> None:
        self.stop(c)
        c.app.context.worker_events = None

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
