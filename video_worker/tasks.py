"""The Celery tasks: thin wrappers that validate, call ``pipeline``, dump.

Every task runs through ``_run``: a ``TransientError`` is retried as
``retry.RetryPolicy`` says (the delay is SQS ``DelaySeconds``, not an ETA);
anything else, or a transient error past its retry bound, is written to the
dead-letter queue and fails the chain.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from celery import Task
from pydantic import BaseModel, ValidationError

from video_worker import affinity, pipeline
from video_worker.deadletters import DeadLetter
from video_worker.errors import InvalidPayload, VideoWorkerError
from video_worker.payloads import Downloaded, Inferred, Uploaded, VideoWorkerPayload

if TYPE_CHECKING:
    from video_worker.app import VideoWorkerApp

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
DEAD_LETTER_RETRY_SECONDS = 30
R = TypeVar("R", bound=BaseModel)


class PipelineTask(Task):
    """Base of the pipeline's tasks (late ack; a lost worker's message is redelivered)."""

    acks_late = True
    reject_on_worker_lost = True
    default_retry_delay = 0  # the real delay is the message's SQS DelaySeconds


def parse_payload(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or model.__name__
        raise InvalidPayload(f"invalid {model.__name__} payload: {where}: {first['msg']}") from None


def _segment_of(data: Any) -> VideoWorkerPayload | None:
    """The segment a (possibly invalid) task argument is about, for the dead letter."""
    candidate = data.get("segment", data) if isinstance(data, dict) else None
    try:
        return VideoWorkerPayload.model_validate(candidate)
    except ValidationError:
        return None


def _run(task: Task, app: VideoWorkerApp, model: type[M], stage: Callable[[M, pipeline.Runtime], R],
         payload: Any) -> dict[str, Any]:
    try:
        result = stage(parse_payload(model, payload), app.runtime)
    except Exception as exc:
        retries = int(task.request.retries or 0)
        delay = after_failure(task.name, task.request.id, app, payload, exc, retries)
        if delay is None:
            raise
        raise task.retry(exc=exc, countdown=0, max_retries=retries + 1, delay_seconds=delay) from exc
    data = result.model_dump(mode="json")
    if not getattr(result, "skipped", None):
        affinity.continue_chain(task, app, data)
    else:
        task.request.chain = None  # nothing left to do for this upload: stop the chain here
    return data


def after_failure(task_name: str, task_id: str | None, app: VideoWorkerApp, payload: Any, exc: Exception,
                  retries: int) -> int | None:
    """What a failed stage does next, for a Celery task and a stage ``affinity`` ran alike.

    The SQS delay (seconds) of its retry, by ``retry.RetryPolicy``; or None once it
    is dead-lettered. Work whose dead letter cannot be written is retried after
    ``DEAD_LETTER_RETRY_SECONDS`` instead: it is not recorded anywhere yet.
    """
    policy = app.settings.retry_policy
    if policy.should_retry(task_name, exc, retries):
        delay = policy.delay_seconds(task_name, retries)
        log.warning("%s: %s; retry %d in %ds", task_name, exc, retries + 1, delay)
        return delay
    if dead_letter(task_name, task_id, app, payload, exc, attempts=retries + 1):
        return None
    return DEAD_LETTER_RETRY_SECONDS


def dead_letter(task_name: str, task_id: str | None, app: VideoWorkerApp, payload: Any, exc: Exception,
                attempts: int) -> bool:
    """Put the failed work on the dead-letter queue; False if that failed too (retry it instead)."""
    segment = _segment_of(payload)
    letter = DeadLetter(
        payload=segment,
        raw_payload=None if segment else (payload if isinstance(payload, dict) else {"value": repr(payload)}),
        failed_task=task_name,
        error_type=type(exc).__name__,
        error=str(exc)[:2000] if isinstance(exc, VideoWorkerError) else f"{type(exc).__name__}: {exc}"[:2000],
        attempts=attempts,
        failed_at=int(time.time()),
        task_id=task_id,
    )
    try:
        app.dead_letters.put(letter)
    except VideoWorkerError as dlq_error:
        log.error("%s: could not dead-letter (%s); retrying the task in %ds",
                  task_name, dlq_error, DEAD_LETTER_RETRY_SECONDS)
        return False
    log.error("%s failed for good after %d attempt(s): %s; dead letter %s",
              task_name, attempts, letter.error, letter.id)
    return True


def register(app: VideoWorkerApp) -> None:
    """Register the pipeline's tasks on ``app``."""
    options: dict[str, Any] = {"base": PipelineTask, "shared": False, "bind": True}

    @app.task(name="video_worker.download", **options)
    def download(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
        return _run(self, app, VideoWorkerPayload, pipeline.download, payload)

    @app.task(name="video_worker.infer", **options)
    def infer(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
        return _run(self, app, Downloaded, pipeline.infer, payload)

    @app.task(name="video_worker.upload", **options)
    def upload(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
        return _run(self, app, Inferred, pipeline.upload, payload)

    @app.task(name="video_worker.record", **options)
    def record(self: Task, payload: dict[str, Any]) -> dict[str, Any]:
        return _run(self, app, Uploaded, pipeline.record, payload)

    @app.task(name="video_worker.process", **options)
    def process(self: Task, payload: dict[str, Any]) -> str:
        """Entry point for non-Python publishers: start the chain for one segment."""
        from video_worker.app import build_chain

        segment = parse_payload(VideoWorkerPayload, payload)
        return str(build_chain(segment, app).apply_async().id)
