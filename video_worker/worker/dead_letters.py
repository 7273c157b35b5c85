"""Dead letters from the worker: what a failed stage, a revoked one or an unrunnable message becomes.

``letter_for`` builds the ``DeadLetter`` (``dead_letter.py``) of a payload that may
not even be valid; ``DeadLetterWriter`` writes it patiently
(``PUBLISH_PATIENCE_SECONDS``, or ``LOOP_PATIENCE_SECONDS`` on the worker's event
loop) and, when it cannot, raises Celery's ``Reject(requeue=True)``: kombu's SQS
transport then makes the message visible again (``SQS.Channel._put`` with
``redelivered``: a ``ChangeMessageVisibility``, never a delete) and it comes
again. Used by the stage lifecycle (``lifecycle.py``), chain affinity
(``affinity.py``) and the consumer (``consumer.py``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from celery.exceptions import Reject
from pydantic import ValidationError

from video_worker import failure_policy
from video_worker.dead_letter import DeadLetter
from video_worker.errors import Undelivered, classify
from video_worker.ports import DeadLetterStore
from video_worker.segments import Segment

log = logging.getLogger(__name__)

#: Seconds the worker's event loop (the consumer, Celery's signal handlers in the main process) may spend
#: writing one dead letter before handing the message back: it must not stall the loop for a whole outage.
LOOP_PATIENCE_SECONDS = 5.0


def segment_of(data: Any) -> Segment | None:
    """The segment a (possibly invalid) task argument is about, for the dead letter."""
    candidate = data.get("segment", data) if isinstance(data, dict) else None
    try:
        return Segment.model_validate(candidate)
    except ValidationError:
        return None


def letter_for(stage: str, task_id: str | None, payload: Any, error: BaseException, attempts: int,
               reason: str | None = None, raw_message: dict[str, Any] | None = None) -> DeadLetter:
    segment = segment_of(payload)
    error = classify(error)
    return DeadLetter(
        payload=segment,
        raw_payload=None if segment or raw_message else (payload if isinstance(payload, dict)
                                                          else {"value": repr(payload)}),
        raw_message=raw_message,
        failed_task=stage,
        error_type=type(error).__name__,
        error=(reason or str(error))[:2000],
        attempts=max(1, attempts),
        failed_at=int(time.time()),
        task_id=task_id,
    )


class DeadLetterWriter:
    """Writes dead letters to this process's store, patiently; ``Reject(requeue=True)`` if it cannot."""

    def __init__(self, store: Callable[[], DeadLetterStore], patience: Callable[[], float]) -> None:
        self._store = store  # built on first use, per process
        self._patience = patience  # PUBLISH_PATIENCE_SECONDS

    def write(self, letter: DeadLetter, patience: float | None = None) -> None:
        try:
            failure_policy.patiently(lambda: self._store().put(letter), f"dead letter for {letter.failed_task}",
                               patience=self._patience() if patience is None else patience)
        except Undelivered as undelivered:
            log.error("%s: %s; the message goes back to the queue", letter.failed_task, undelivered)
            raise Reject(undelivered, requeue=True) from undelivered
        log.error("%s failed for good after %d attempt(s) (%s): %s; dead letter %s",
                  letter.failed_task, letter.attempts, letter.segment_label, letter.error, letter.id)
