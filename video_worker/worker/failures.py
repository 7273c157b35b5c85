"""Apply ``delivery``'s decisions to the worker's messages: re-publish, dead-letter, or hand back.

Used by the Celery tasks (``tasks``), by the stages chain affinity runs
(``affinity``) and by the consumer for messages that are not runnable tasks
(``consumer``). Each of them deletes (acknowledges) its message only after
what this module returns: a retry published, or a dead letter written. When
neither can be written within ``PUBLISH_PATIENCE_SECONDS`` it raises Celery's
``Reject(requeue=True)``: kombu's SQS transport then makes the message
visible again (``SQS.Channel._put`` with ``redelivered``: a
``ChangeMessageVisibility``, never a delete) and it comes again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celery.exceptions import Reject
from pydantic import ValidationError

from video_worker import delivery
from video_worker.errors import Undelivered, classify
from video_worker.letters import DeadLetter
from video_worker.segments import Segment

if TYPE_CHECKING:
    from video_worker.worker.app import VideoWorkerApp

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


def write_dead_letter(app: VideoWorkerApp, letter: DeadLetter, patience: float | None = None) -> None:
    """Write ``letter`` patiently; ``Reject(requeue=True)`` if it cannot be written."""
    try:
        delivery.patiently(lambda: app.context.dead_letters.put(letter), f"dead letter for {letter.failed_task}",
                           patience=app.settings.publish_patience_seconds if patience is None else patience)
    except Undelivered as undelivered:
        log.error("%s: %s; the message goes back to the queue", letter.failed_task, undelivered)
        raise Reject(undelivered, requeue=True) from undelivered
    log.error("%s failed for good after %d attempt(s) (%s): %s; dead letter %s",
              letter.failed_task, letter.attempts, letter.segment_label, letter.error, letter.id)


def on_stage_failure(app: VideoWorkerApp, stage: str, task_id: str | None, payload: Any, exc: BaseException,
                     retries: int, republish: Callable[[int], None]) -> delivery.Decision:
    """Retry the failed stage (``republish(delay_seconds)``) or dead-letter it; return which was done.

    Raises ``Reject(requeue=True)`` when neither could be published: nothing recorded the
    work, so its message must come again.
    """
    settings = app.settings
    decision = delivery.decide(settings.retry_policy, stage, exc, retries, settings.max_deliveries)
    if isinstance(decision, delivery.RetryLater):
        log.warning("%s: %s; retry %d in %ds", stage, exc, retries + 1, decision.delay_seconds)
        try:
            delivery.patiently(lambda: republish(decision.delay_seconds), f"publishing the retry of {stage}",
                               patience=settings.publish_patience_seconds)
        except Undelivered as undelivered:
            log.error("%s: %s; the message goes back to the queue", stage, undelivered)
            raise Reject(undelivered, requeue=True) from exc
        return decision
    write_dead_letter(app, letter_for(stage, task_id, payload, exc, retries + 1, decision.reason))
    return decision
