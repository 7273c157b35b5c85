"""Refill a freed task slot at once: a short tick for the worker's event loop.

With late acks the SQS consumer may hold ``concurrency * prefetch multiplier``
unacknowledged messages. When all are held, kombu's ``SQS.Channel._schedule_queue``
re-schedules itself with ``hub.call_soon`` from the loop's own thread, which
does not wake the loop: it sleeps in ``poll`` until the next timer or socket
event, up to 1 s (``kombu/asynchronous/hub.py`` ``Hub.create_loop``). A slot
freed by a pool thread's ack therefore waited for an unrelated wake-up before
the next ``ReceiveMessage``: with ``MONITORING=off`` (fewer timers and sockets)
the gap between receives was 0.115 s at the median and the pool ran 0.72 of 3
tasks on average (BENCHMARKS.md). A timer every ``TICK_SECONDS`` bounds it.
"""

from __future__ import annotations

from typing import Any

from celery import bootsteps

TICK_SECONDS = 0.01


def _tick() -> None:
    """Nothing: firing a timer is what turns the loop."""


class SlotRefill(bootsteps.StartStopStep):
    """Consumer step: keep the event loop turning every ``TICK_SECONDS``."""

    def __init__(self, c: Any, **kwargs: Any) -> None:
        self._timer: Any = None
        super().__init__(c, **kwargs)

    def start(self, c: Any) -> None:
        self.stop(c)
        if c.hub is not None:
            self._timer = c.hub.call_repeatedly(TICK_SECONDS, _tick)

    def stop(self, c: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    shutdown = stop
