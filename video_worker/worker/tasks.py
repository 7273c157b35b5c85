"""The Celery tasks, registered from ``stages.STAGES``: thin wrappers that validate, run the stage, dump.

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

from typing import TYPE_CHECKING, Any

from celery import Task
from celery.exceptions import Reject, Retry

from video_worker import delivery
from video_worker.errors import BadMessage, Undelivered, classify
from video_worker.limits import Deadline
from video_worker.segments import Segment, parse_payload
from video_worker.stages import ENTRY_TASK, STAGES, Stage
from video_worker.worker import affinity
from video_worker.worker.chain import build_chain
from video_worker.worker.failures import on_stage_failure

if TYPE_CHECKING:
    from video_worker.worker.app import VideoWorkerApp


class PipelineTask(Task):
    """Base of the pipeline's tasks (late ack; a lost worker's message is redelivered)."""

    acks_late = True
    reject_on_worker_lost = True
    #: A Celery hard time limit (prefork) hands the message back; it comes again, bounded by MAX_DELIVERIES.
    acks_on_timeout = False
    #: Arguments are checked by ``_run``: wrong arguments end as a dead letter, not as a dropped message.
    typing = False


def only_payload(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The one positional argument every pipeline task takes."""
    if len(args) != 1 or kwargs:
        raise BadMessage(f"{name} takes one payload argument, got {len(args)} positional and "
                         f"{len(kwargs)} keyword argument(s) {sorted(kwargs)}")
    return args[0]


def _run(task: Task, app: VideoWorkerApp, stage: Stage, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    request = task.request
    payload: Any = {"args": list(args), "kwargs": kwargs}
    try:
        payload = only_payload(task.name, args, kwargs)
        deadline = Deadline.start(stage.name, app.settings.stage_time_limits[stage.name])
        result = stage.run(parse_payload(stage.input, payload), app.context.dependencies, deadline)
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


def _start_chain(task: Task, app: VideoWorkerApp, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """``video_worker.process``: validate the segment, publish its chain (patiently), return the chain's id."""
    try:
        segment = parse_payload(Segment, only_payload(task.name, args, kwargs))
    except Exception as exc:  # permanent: dead-lettered
        on_stage_failure(app, task.name, task.request.id, {"args": list(args), "kwargs": kwargs}, exc, 0,
                         lambda _delay: None)
        raise classify(exc) from exc
    try:
        result = delivery.patiently(lambda: build_chain(segment, app).apply_async(), "publishing the chain",
                                    patience=app.settings.publish_patience_seconds)
    except Undelivered as undelivered:
        raise Reject(undelivered, requeue=True) from undelivered
    return str(result.id)


def register(app: VideoWorkerApp) -> None:
    """Register a task per stage of ``STAGES``, and the entry task for non-Python publishers, on ``app``."""
    options: dict[str, Any] = {"base": PipelineTask, "shared": False, "bind": True}

    def stage_task(stage: Stage) -> Any:
        def run(self: Task, *args: Any, **kwargs: Any) -> Any:
            return _run(self, app, stage, args, kwargs)

        run.__name__, run.__doc__ = stage.name.rsplit(".", 1)[-1], stage.run.__doc__
        return run

    for stage in STAGES:
        app.task(name=stage.name, **options)(stage_task(stage))

    @app.task(name=ENTRY_TASK, **options)
    def process(self: Task, *args: Any, **kwargs: Any) -> str:
        """Entry point for non-Python publishers: start the chain for one segment."""
        return _start_chain(self, app, args, kwargs)
