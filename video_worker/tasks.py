"""The Celery tasks: thin wrappers that validate, call ``pipeline``, dump.

Every stage task runs through ``_run`` with its ``Deadline`` (``STAGE_TIME_LIMITS``).
A failure goes to ``failures.on_stage_failure``: a retry is published by
this module (same task id, ``retries`` + 1, SQS ``DelaySeconds``, never an
ETA) before Celery's ``Retry`` acknowledges the message; anything else is
dead-lettered before the task fails (and its message is deleted); if neither
can be published the message goes back (``Reject(requeue=True)``).
``Task.retry`` is not used: a failed publish there becomes
``Reject(requeue=False)``, which kombu's SQS transport turns into a delete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from celery import Task
from celery.exceptions import Reject, Retry
from pydantic import BaseModel, ValidationError

from video_worker import affinity, delivery, pipeline
from video_worker.errors import BadMessage, InvalidPayload, Undelivered, classify
from video_worker.failures import on_stage_failure
from video_worker.limits import Deadline
from video_worker.payloads import Downloaded, Inferred, Uploaded, VideoWorkerPayload

if TYPE_CHECKING:
    from video_worker.app import VideoWorkerApp

M = TypeVar("M", bound=BaseModel)
R = TypeVar("R", bound=BaseModel)


class PipelineTask(Task):
    """Base of the pipeline's tasks (late ack; a lost worker's message is redelivered)."""

    acks_late = True
    reject_on_worker_lost = True
    #: A Celery hard time limit (prefork) hands the message back; it comes again, bounded by MAX_DELIVERIES.
    acks_on_timeout = False
    #: Arguments are checked by ``_run``: wrong arguments end as a dead letter, not as a dropped message.
    typing = False


def parse_payload(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or model.__name__
        raise InvalidPayload(f"invalid {model.__name__} payload: {where}: {first['msg']}") from None


def only_payload(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The one positional argument every pipeline task takes."""
    if len(args) != 1 or kwargs:
        raise BadMessage(f"{name} takes one payload argument, got {len(args)} positional and "
                         f"{len(kwargs)} keyword argument(s) {sorted(kwargs)}")
    return args[0]


def _run(task: Task, app: VideoWorkerApp, model: type[M],
         stage: Callable[[M, pipeline.Runtime, Deadline], R], args: tuple[Any, ...],
         kwargs: dict[str, Any]) -> dict[str, Any]:
    request = task.request
    payload: Any = {"args": list(args), "kwargs": kwargs}
    try:
        payload = only_payload(task.name, args, kwargs)
        deadline = Deadline.start(task.name, app.settings.stage_time_limits[task.name])
        result = stage(parse_payload(model, payload), app.runtime, deadline)
    except Exception as exc:
        if request.is_eager:
            raise
        retries = int(request.retries or 0)

        def republish(delay: int) -> None:
            task.signature_from_request(request, (payload,), {}, retries=retries + 1,
                                        delay_seconds=delay).apply_async()

        decision = on_stage_failure(app, task.name, request.id, payload, exc, retries, republish)
        if isinstance(decision, delivery.RetryLater):
            raise Retry(exc=classify(exc), when=decision.delay_seconds) from exc
        raise classify(exc) from exc
    data = result.model_dump(mode="json")
    if not getattr(result, "skipped", None):
        affinity.continue_chain(task, app, data)
    else:
        request.chain = None  # nothing left to do for this upload: stop the chain here
    return data


def register(app: VideoWorkerApp) -> None:
    """Register the pipeline's tasks on ``app``."""
    options: dict[str, Any] = {"base": PipelineTask, "shared": False, "bind": True}

    @app.task(name="video_worker.download", **options)
    def download(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return _run(self, app, VideoWorkerPayload, pipeline.download, args, kwargs)

    @app.task(name="video_worker.infer", **options)
    def infer(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return _run(self, app, Downloaded, pipeline.infer, args, kwargs)

    @app.task(name="video_worker.upload", **options)
    def upload(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return _run(self, app, Inferred, pipeline.upload, args, kwargs)

    @app.task(name="video_worker.record", **options)
    def record(self: Task, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return _run(self, app, Uploaded, pipeline.record, args, kwargs)

    @app.task(name="video_worker.process", **options)
    def process(self: Task, *args: Any, **kwargs: Any) -> str:
        """Entry point for non-Python publishers: start the chain for one segment."""
        from video_worker.app import build_chain

        try:
            segment = parse_payload(VideoWorkerPayload, only_payload(self.name, args, kwargs))
        except Exception as exc:  # permanent: dead-lettered
            on_stage_failure(app, self.name, self.request.id, {"args": list(args), "kwargs": kwargs}, exc, 0,
                             lambda _delay: None)
            raise classify(exc) from exc
        try:
            result = delivery.patiently(lambda: build_chain(segment, app).apply_async(), "publishing the chain",
                                        patience=app.settings.publish_patience_seconds)
        except Undelivered as undelivered:
            raise Reject(undelivered, requeue=True) from undelivered
        return str(result.id)
