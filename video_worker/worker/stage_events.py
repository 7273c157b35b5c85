"""Task events for the stages chain affinity runs without a message of their own."""

from __future__ import annotations

from typing import Any

#: Events a dispatcher holds before it flushes (≈ 1 KiB each, Celery's saferepr truncates; an SNS message
#: holds 256 KiB).
BUFFER_LIMIT = 100


class StageEvents:
    """Sends events through a Celery event dispatcher (none: events are off)."""

    def __init__(self, dispatcher: Any | None, *, batched: bool) -> None:
        self._dispatcher = dispatcher
        self._batched = batched

    def send(self, type_: str, **fields: Any) -> None:
        if self._dispatcher is not None:
            self._dispatcher.send(type_, **fields)

    def flush_if_unbatched(self) -> None:
        """Outside the worker's main process no timer flushes: publish at the end of each stage."""
        if self._dispatcher is not None and not self._batched:
            self._dispatcher.flush(errors=True, groups=True)
