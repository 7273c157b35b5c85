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

import logging
from typing import TYPE_CHECKING, Any

from celery import Task, signals
from celery.exceptions import Reject, Retry

from video_worker import delivery
from video_worker.errors import BadMessage, Undelivered, classify
from video_worker.limits import Deadline
from video_worker.segments import Segment, parse_payload
from video_worker.stages import ENTRY_TASK, STAGES, Stage
from video_worker.worker import affinity, upstream
from video_worker.worker.chain import build_chain
from video_worker.worker.failures import LOOP_PATIENCE_SECONDS, letter_for, on_stage_failure, write_dead_letter

if TYPE_CHECKING:
    from video_worker.worker.app import VideoWorkerApp

log = logging.getLogger(__name__)


class PipelineTask(upstream.TracedTask):
    """Base of the pipeline's tasks (late ack; a lost worker's message is redelivered).

    Its tracer is Celery's, followed by chain affinity's ``run_after`` (``upstream.TracedTask``): the rest of
    the segment's chain runs once this task's own trace (and its signals) is over.
    """

    acks_late = True
    reject_on_worker_lost = True
    #: A Celery hard time limit (prefork) hands the message back; it comes again, bounded by MAX_DELIVERIES.
    acks_on_timeout = False
    #: Arguments are checked by ``_run``: wrong arguments end as a dead letter, not as a dropped message.
    typing = False

    def around_trace(self, task_id: str, trace: Any) -> Any:
        try:
            traced = trace()
        except BaseException:
            affinity.discard(task_id)
            raise
        affinity.run_after(self.app, task_id)
        return traced


def payload_problem(name: str, args: Any, kwargs: Any) -> str | None:
    """The payload rule: every pipeline task takes one positional argument (its payload) and nothing else.
    Checked by the consumer before a message becomes a request, and by each task on what Celery gives it."""
    if len(args) != 1 or kwargs:
        return (f"{name} takes one payload argument, got {len(args)} positional and "
                f"{len(kwargs)} keyword argument(s) {sorted(kwargs)}")
    return None


def only_payload(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """The one positional argument every pipeline task takes."""
    problem = payload_problem(name, args, kwargs)
    if problem:
        raise BadMessage(problem)
    return args[0]


def _run(task: Task, app: VideoWorkerApp, stage: Stage, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    request = task.request
    payload: Any = {"args": list(args), "kwargs": kwargs}
    try:
        payload = only_payload(task.name, args, kwargs)
        deadline = Deadline.start(stage.name, time_limit(app, task, stage))
        result = stage.run(parse_payload(stage.input, payload), app.context.dependencies, deadline)
    except Exception as exc:
        if request.is_eager:
            raise
        retries = int(request.retries or 0)

        def republish(delay: int) -> None:
            upstream.retry_signature(task, payload, retries + 1, delay).apply_async()

        decision = on_stage_failure(app, task.name, request.id, payload, exc, retries, republish)
        if isinstance(decision, delivery.RetryLater):
            raise Retry(exc=classify(exc), when=decision.delay_seconds) from exc
        raise classify(exc) from exc
    data = result.model_dump(mode="json")
    if not getattr(result, "skipped", None):
        affinity.take_chain(task, data)  # the rest runs (or is published) once this task's trace is over
    else:
        upstream.take_chain(request)  # nothing left to do for this upload: stop the chain here
    return data


def time_limit(app: VideoWorkerApp, task: Task, stage: Stage) -> float:
    """The stage's limit: ``STAGE_TIME_LIMITS``, or Celery's hard limit when one is configured and shorter
    (``--time-limit``/``task_time_limit``, the task's ``time_limit``, the message's ``timelimit`` header) in a
    pool that does not enforce it (threads, solo: ``context.ProcessStart`` sets ``app.celery_time_limit``).
    Under prefork Celery kills the process at its limit and the message comes again (``MAX_DELIVERIES``)."""
    limits = [app.settings.stage_time_limits[stage.name]]
    worker_limit = app.celery_time_limit
    if worker_limit is None:  # prefork (or no worker): Celery's limits are the pool's to enforce
        return limits[0]
    header = task.request.timelimit or (None, None)
    for configured in (header[1] if len(header) > 1 else None, task.time_limit, worker_limit):
        if configured:
            limits.append(float(configured))
    return min(limits)


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


@signals.task_revoked.connect
def _dead_letter_revoked(sender: Any = None, request: Any = None, terminated: bool = False, expired: bool = False,
                         **_: Any) -> None:
    """A pipeline task revoked (or expired) before it ran: its segment ends as a dead letter, not silently.

    Celery discards a revoked task's message (``celery/worker/request.py`` ``Request.revoked``) and sends
    this signal; chain affinity does the same for the stages it runs (``affinity._revoked``).
    """
    if not isinstance(sender, PipelineTask) or request is None:
        return
    reason = f"{sender.name} was {'expired' if expired else 'revoked'} before it ran"
    args = getattr(request, "args", None) or ()
    letter = letter_for(sender.name, getattr(request, "id", None), args[0] if args else None,
                        affinity.Revoked(reason), 1, reason)
    try:
        write_dead_letter(sender.app, letter, patience=LOOP_PATIENCE_SECONDS)
    except Reject:
        log.error("%s: could not write the dead letter of a revoked task", sender.name)
