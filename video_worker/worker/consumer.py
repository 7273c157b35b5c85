"""The worker's consumer: a task message that cannot be run becomes a dead letter, never a crash or a silent drop.

Celery's ``Consumer.create_task_handler`` (``celery/worker/consumer/consumer.py``)
catches only ``InvalidTaskError``, ``ContentDisallowed`` and ``DecodeError``
while it turns a message into a request: a protocol-2 message whose body is
``{"a": 1}`` raised ``ValueError`` out of the consumer (``Unrecoverable error``),
the message went back on shutdown and crashed the next worker, forever. Its
handlers for unknown tasks and undecodable or disallowed messages reject or
acknowledge them, which on SQS deletes them with no trace.

Here every message is screened first (``screen``): a task this worker does
not know, a content type other than JSON, a body that is not
``[args, kwargs, embed]``, wrong arguments for a pipeline task, or a message
delivered more than ``MAX_DELIVERIES`` times (its workers died holding it)
is dead-lettered with its raw body and the reason, then acknowledged; and
anything else Celery's handler raises is treated the same way. If the dead
letter cannot be written the message goes back (``reject(requeue=True)``).
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

from celery.exceptions import Reject

from video_worker import failure_policy
from video_worker.adapters.sqs import receive_count_of
from video_worker.dead_letter import RAW_BODY_LIMIT
from video_worker.errors import BadMessage, VideoWorkerError, WorkerLost
from video_worker.worker import upstream
from video_worker.worker.dead_letters import LOOP_PATIENCE_SECONDS, letter_for
from video_worker.worker.lifecycle import payload_problem

log = logging.getLogger(__name__)



def receive_count(message: Any) -> int | None:
    """SQS's ``ApproximateReceiveCount`` of a kombu message (kombu keeps the raw message in ``delivery_info``)."""
    return receive_count_of((getattr(message, "delivery_info", None) or {}).get("sqs_message") or {})


def raw_message(message: Any) -> dict[str, Any]:
    body = getattr(message, "body", b"")
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    return {
        "body": text[:RAW_BODY_LIMIT],
        "body_truncated": len(text) > RAW_BODY_LIMIT,
        "headers": {str(k): v for k, v in (getattr(message, "headers", None) or {}).items()
                    if isinstance(v, str | int | float | bool | type(None))},
        "content_type": getattr(message, "content_type", None),
        "receive_count": receive_count(message),
    }


def screen(message: Any, known: Collection[str], single_payload: Collection[str],
           max_deliveries: int) -> VideoWorkerError | None:
    """Why ``message`` cannot be run as a task (a ``BadMessage`` or, for poison, ``WorkerLost``), or None."""
    headers = getattr(message, "headers", None)
    name = headers.get("task") if isinstance(headers, dict) else None
    if not isinstance(name, str) or not name:
        return BadMessage("not a Celery task message: no 'task' header (Celery message protocol 2 expected)")
    if name not in known:
        return BadMessage(f"unknown task {name!r}: this worker runs {', '.join(sorted(known))}")
    poison = failure_policy.too_many_deliveries(receive_count(message), max_deliveries)
    if poison:
        return WorkerLost(f"{name}: {poison}")
    if message.content_type != "application/json":
        return BadMessage(f"{name}: content type {message.content_type!r} is not accepted (JSON only)")
    try:
        body = message.decode()
    except Exception as exc:
        return BadMessage(f"{name}: body is not JSON ({type(exc).__name__}: {exc})")
    if not (isinstance(body, list | tuple) and len(body) == 3 and isinstance(body[0], list | tuple)
            and isinstance(body[1], dict) and isinstance(body[2], dict | type(None))):
        return BadMessage(f"{name}: body is not [args, kwargs, embed] (Celery message protocol 2), "
                          f"got {type(body).__name__}")
    args, kwargs, embed = body
    problem = payload_problem(name, args, kwargs) if name in single_payload else None
    if problem:
        return BadMessage(problem)
    chain = (embed or {}).get("chain")
    if chain is not None and not (isinstance(chain, list) and all(isinstance(step, dict) for step in chain)):
        return BadMessage(f"{name}: embed.chain is not a list of signatures")
    return None


def _first_argument(message: Any) -> Any:
    try:
        body = message.decode()
        return body[0][0]
    except Exception:
        return None


class Consumer(upstream.HookedConsumer):
    """Celery's consumer, with ``screen`` before every task message and dead letters instead of drops."""

    _known: frozenset[str] | None = None

    def screen(self, message: Any) -> VideoWorkerError | None:
        if self._known is None:  # the tasks are all registered once the worker consumes
            self._known = frozenset(self.app.tasks)
        single = frozenset(name for name in self._known if name.startswith("video_worker."))
        return screen(message, self._known, single, self.app.settings.max_deliveries)

    def cannot_run(self, message: Any, reason: str) -> None:
        self.dead_letter_message(message, BadMessage(reason))

    def dead_letter_message(self, message: Any, problem: Exception) -> None:
        """Dead-letter ``message`` (raw) with ``problem`` as its reason, then acknowledge (delete) it."""
        headers = message.headers if isinstance(getattr(message, "headers", None), dict) else {}
        name = str(headers.get("task") or "?")
        task_id = headers.get("id") if isinstance(headers.get("id"), str) else None
        log.error("message %s for %s: %s", task_id or "?", name, problem)
        letter = letter_for(name, task_id, _first_argument(message), problem, receive_count(message) or 1,
                            raw_message=raw_message(message))
        try:
            self.app.dead_letter_writer.write(letter, patience=LOOP_PATIENCE_SECONDS)
        except Reject:
            message.reject_log_error(log, self.connection_errors, requeue=True)
            return
        if self.event_dispatcher is not None and task_id:
            self.event_dispatcher.send("task-failed", uuid=task_id, exception=str(problem))
        message.ack_log_error(log, self.connection_errors)
